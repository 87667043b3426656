/** Shorter values are not removed: a short "secret" would blank common words out of every line. */
const MIN_SECRET_LENGTH = 8;
/** Longer values are no credential this runtime reads, and would cost every line a long search. */
const MAX_SECRET_LENGTH = 4096;
/** Secrets kept at once; rotations push the oldest out. */
const MAX_SECRETS = 32;

export const REDACTED = '[redacted]';

/**
 * Removes known secret values (signing secret, bot token, database password, Vault token) from
 * text that is about to be logged. The secret sources report each value they read (`add`); the
 * app's logger redacts every line with it. Bounded: the newest MAX_SECRETS values are kept.
 */
export class Redactor {
  /** Each secret, newest last, with its JSON-escaped form (log lines are JSON). */
  private readonly secrets = new Map<string, string>();

  add(secret: string): void {
    if (secret.length < MIN_SECRET_LENGTH || secret.length > MAX_SECRET_LENGTH) return;
    this.secrets.delete(secret);
    this.secrets.set(secret, JSON.stringify(secret).slice(1, -1));
    if (this.secrets.size > MAX_SECRETS) {
      const oldest = this.secrets.keys().next().value;
      if (oldest !== undefined) this.secrets.delete(oldest);
    }
  }

  /** `text` with every known secret, as written or JSON-escaped, replaced by `[redacted]`. */
  redact(text: string): string {
    let redacted = text;
    for (const [secret, escaped] of this.secrets) {
      if (redacted.includes(secret)) redacted = redacted.replaceAll(secret, REDACTED);
      if (escaped !== secret && redacted.includes(escaped)) {
        redacted = redacted.replaceAll(escaped, REDACTED);
      }
    }
    return redacted;
  }
}
