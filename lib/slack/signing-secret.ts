import { CachedSecret, type CachedSecretOptions } from '../cached-secret';

export type SigningSecretOptions = Omit<CachedSecretOptions, 'description'>;

/**
 * The Slack signing secret: a CachedSecret (TTL, stale-if-error, backoff) that may be read again
 * after a signature mismatch, once per TTL, so a rotated secret is picked up without a restart.
 */
export class SigningSecret extends CachedSecret {
  constructor(options: SigningSecretOptions) {
    super({ ...options, description: 'the signing secret' });
  }

  /** A different secret after a mismatch, read at most once per TTL; otherwise undefined. */
  refreshAfterMismatch(): Promise<string | undefined> {
    return this.refreshAfterRejection();
  }
}
