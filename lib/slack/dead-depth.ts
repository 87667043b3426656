import { reasonOf } from '../errors';
import type { Logger } from '../logger';

export interface DeadDepthOptions {
  /** Counts the dead events (PostgreSQL). */
  count: () => Promise<number>;
  /** Longest a read waits for the count; past it the read answers NaN (unknown). */
  timeoutMs: number;
  /** How long a count, or a failure to count, is reused. */
  ttlMs: number;
  logger: Logger;
  /** Monotonic milliseconds; injectable so tests can move time. */
  now?: () => number;
}

/**
 * The number of dead events for the gauge, read at scrape time: one count at a time shared by
 * every caller, reused for ttlMs, and never slower than timeoutMs nor failing: unknown is NaN
 * (a scrape is never failed or held by PostgreSQL). A failure is logged once until a count works.
 */
export class DeadDepth {
  private cached: { value: number; at: number } | undefined;
  private pending: Promise<number> | undefined;
  private failing = false;
  private readonly now: () => number;

  constructor(private readonly options: DeadDepthOptions) {
    this.now = options.now ?? (() => performance.now());
  }

  async read(): Promise<number> {
    const { cached } = this;
    if (cached !== undefined && this.now() - cached.at < this.options.ttlMs) return cached.value;
    this.pending ??= this.count().finally(() => {
      this.pending = undefined;
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<number>((resolve) => {
      timer = setTimeout(() => {
        resolve(Number.NaN);
      }, this.options.timeoutMs);
    });
    try {
      return await Promise.race([this.pending, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async count(): Promise<number> {
    let value: number;
    try {
      value = await this.options.count();
      if (this.failing) this.options.logger.info('slack dead letters counted again');
      this.failing = false;
    } catch (error) {
      if (!this.failing) {
        this.options.logger.warn('slack dead letters not counted', { reason: reasonOf(error) });
      }
      this.failing = true;
      value = Number.NaN;
    }
    this.cached = { value, at: this.now() };
    return value;
  }
}
