/** Canary values planted in every secret: none may come out anywhere. */
export const CANARIES = {
  VAULT_TOKEN: 'canary-vault-token-4c1f',
  SLACK_SIGNING_SECRET: 'canary-signing-secret-9b2e',
  vaultStoredSecret: 'canary-vault-stored-secret-77d0',
  jwt: 'canary-service-account-jwt-3a8e',
  PGPASSWORD: 'canary-pg-password-6c0b',
  vaultStoredPgPassword: 'canary-vault-pg-password-91fa',
  SLACK_BOT_TOKEN: 'xoxb-canary-bot-token-5d2a',
  vaultStoredBotToken: 'xoxb-canary-vault-bot-token-e4b7',
  rotatedBotToken: 'xoxb-canary-rotated-bot-token-08c3',
};

export function expectNoCanary(where: string, text: string): void {
  for (const [name, canary] of Object.entries(CANARIES)) {
    if (text.includes(canary)) throw new Error(`${name} leaked into ${where}`);
  }
}
