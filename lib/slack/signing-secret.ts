import { reasonOf } from '../errors';
import { componentHealth, type ComponentHealth } from '../health';

/**
 * The Slack signing secret, read through `load` (Vault, or a setting outside production) and
 * reused for ttlMs. After a signature mismatch it may be read again at once, but only once per
 * TTL, so a rotated secret is picked up without a restart and bad requests cannot drive reads.
 */
export class SigningSecret {
  private cached: { secret: string; loadedAt: number } | undefined;
  private pending: Promise<string> | undefined;
  private lastForcedAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly load: () => Promise<string>,
    private readonly ttlMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  current(): Promise<string> {
    if (this.cached !== undefined && this.now() - this.cached.loadedAt < this.ttlMs) {
      return Promise.resolve(this.cached.secret);
    }
    return this.reload();
  }

  /** A different secret after a mismatch, read at most once per TTL; otherwise undefined. */
  async refreshAfterMismatch(): Promise<string | undefined> {
    const now = this.now();
    if (now - this.lastForcedAt < this.ttlMs) return undefined;
    this.lastForcedAt = now;
    const before = this.cached?.secret;
    const after = await this.reload();
    return after === before ? undefined : after;
  }

  /** For readiness: whether the secret can be read now (through the cache). */
  async healthCheck(): Promise<ComponentHealth> {
    const started = performance.now();
    let problem: string | undefined;
    try {
      await this.current();
    } catch (error) {
      problem = `cannot read the signing secret: ${reasonOf(error)}`;
    }
    return componentHealth(performance.now() - started, problem);
  }

  private reload(): Promise<string> {
    this.pending ??= this.load()
      .then((secret) => {
        this.cached = { secret, loadedAt: this.now() };
        return secret;
      })
      .finally(() => {
        this.pending = undefined;
      });
    return this.pending;
  }
}
