import { reasonOf } from './errors';
import { componentHealth, type ComponentHealth } from './health';
import type { Redactor } from './redactor';

/** After a failed read, the next waits this long, doubling with each failure up to the cap. */
const FIRST_BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 30_000;

export interface CachedSecretOptions {
  /** Reads the secret (Vault, or a setting outside production). */
  load: () => Promise<string>;
  /** How long a secret read is reused before it is read again. */
  ttlMs: number;
  /** After the TTL, how much longer a secret is still used while reading it again fails. */
  staleMs: number;
  /** What the secret is, in words, for health reasons: "the signing secret". */
  description?: string;
  /** Monotonic milliseconds; injectable so tests can move time. */
  now?: () => number;
  /** Told every value read, so that no log line carries it. */
  redactor?: Redactor;
}

/**
 * A secret read through `load` and reused for ttlMs; one read at a time, shared by every caller.
 * A failed read is remembered: no new read until a backoff (1 s doubling to 30 s) has passed, so
 * that a failing Vault and failing callers cannot multiply reads; meanwhile the last secret read
 * stays in use for up to staleMs past its TTL. After the secret was rejected (a signature
 * mismatch, a refused password) it may be read again at once, but only once per TTL, so a rotated
 * secret is picked up without a restart.
 */
export class CachedSecret {
  private cached: { secret: string; loadedAt: number } | undefined;
  private pending: Promise<string> | undefined;
  private lastForcedAt = Number.NEGATIVE_INFINITY;
  private failure: { error: Error; count: number; retryAt: number } | undefined;
  private readonly now: () => number;
  private readonly description: string;

  constructor(private readonly options: CachedSecretOptions) {
    this.now = options.now ?? (() => performance.now());
    this.description = options.description ?? 'the secret';
  }

  current(): Promise<string> {
    const now = this.now();
    const { cached } = this;
    if (cached !== undefined && now - cached.loadedAt < this.options.ttlMs) {
      return Promise.resolve(cached.secret);
    }
    if (this.failure !== undefined && now < this.failure.retryAt) {
      return this.usable(now) ?? Promise.reject(this.failure.error);
    }
    return this.reload().catch((error: unknown) => {
      const stale = this.usable(this.now());
      if (stale === undefined) throw error;
      return stale;
    });
  }

  /** A different secret after a rejection, read at most once per TTL; otherwise undefined. */
  async refreshAfterRejection(): Promise<string | undefined> {
    const now = this.now();
    if (now - this.lastForcedAt < this.options.ttlMs) return undefined;
    if (this.failure !== undefined && now < this.failure.retryAt) return undefined;
    this.lastForcedAt = now;
    const before = this.cached?.secret;
    const after = await this.reload();
    return after === before ? undefined : after;
  }

  /** For readiness: whether a secret can be used now (through the cache and the backoff). */
  async healthCheck(): Promise<ComponentHealth> {
    const started = performance.now();
    let problem: string | undefined;
    try {
      await this.current();
    } catch (error) {
      problem = `cannot read ${this.description}: ${reasonOf(error)}`;
    }
    return componentHealth(performance.now() - started, problem);
  }

  /** The last secret read, while it is within TTL + staleMs. */
  private usable(now: number): Promise<string> | undefined {
    const { cached } = this;
    if (cached === undefined) return undefined;
    if (now - cached.loadedAt >= this.options.ttlMs + this.options.staleMs) return undefined;
    return Promise.resolve(cached.secret);
  }

  private reload(): Promise<string> {
    this.pending ??= this.options
      .load()
      .then(
        (secret) => {
          this.options.redactor?.add(secret);
          this.cached = { secret, loadedAt: this.now() };
          this.failure = undefined;
          return secret;
        },
        (error: unknown) => {
          const count = (this.failure?.count ?? 0) + 1;
          const backoff = Math.min(FIRST_BACKOFF_MS * 2 ** (count - 1), MAX_BACKOFF_MS);
          const reason = error instanceof Error ? error : new Error('secret read failed');
          this.failure = { error: reason, count, retryAt: this.now() + backoff };
          throw reason;
        },
      )
      .finally(() => {
        this.pending = undefined;
      });
    return this.pending;
  }
}
