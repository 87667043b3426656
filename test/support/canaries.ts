/** Canary values planted in every secret: none may come out anywhere. */
export const CANARIES = {
  VAULT_TOKEN: 'canary-vault-token-4c1f',
  SLACK_SIGNING_SECRET: 'canary-signing-secret-9b2e',
  vaultStoredSecret: 'canary-vault-stored-secret-77d0',
  jwt: 'canary-service-account-jwt-3a8e',
  PGPASSWORD: 'canary-pg-password-6c0b',
  vaultStoredPgPassword: 'canary-vault-pg-password-91fa',
};

export function expectNoCanary(where: string, text: string): void {
  for (const [name, canary] of Object.entries(CANARIES)) {
    if (text.includes(canary)) throw new Error(`${name} leaked into ${where}`);
  }
}
