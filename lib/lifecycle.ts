export interface InFlight {
  /** Requests being answered. */
  requests: number;
  /** Work still running after its request was answered (Slack handlers after the ack). */
  work: number;
}

/**
 * The process's state and what it still owes: requests in flight and work that runs after an
 * answer. Shutdown waits on it; readiness reads it. It knows nothing about HTTP or signals.
 */
export class Lifecycle {
  /** Serving until a drain begins; it never ends but with the process. */
  private isDraining = false;
  private requests = 0;
  private readonly work = new Set<Promise<unknown>>();
  private waiters: (() => void)[] = [];

  get draining(): boolean {
    return this.isDraining;
  }

  /** From now on readiness fails; what is in flight still completes. */
  beginDrain(): void {
    this.isDraining = true;
  }

  inFlight(): InFlight {
    return { requests: this.requests, work: this.work.size };
  }

  /** Counts a request until the returned function is called (once; later calls do nothing). */
  requestStarted(): () => void {
    this.requests += 1;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.requests -= 1;
      this.wakeIfIdle();
    };
  }

  /** Counts work that outlives its request until it settles; its outcome is the caller's. */
  track<T>(work: Promise<T>): Promise<T> {
    const settled = work.then(
      () => undefined,
      () => undefined,
    );
    this.work.add(settled);
    void settled.then(() => {
      this.work.delete(settled);
      this.wakeIfIdle();
    });
    return work;
  }

  /** Resolves true once nothing is in flight, or false when timeoutMs pass first. */
  idle(timeoutMs: number): Promise<boolean> {
    if (this.isIdle()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((waiter) => waiter !== wake);
        resolve(false);
      }, timeoutMs);
      const wake = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.waiters.push(wake);
    });
  }

  private isIdle(): boolean {
    return this.requests === 0 && this.work.size === 0;
  }

  private wakeIfIdle(): void {
    if (!this.isIdle()) return;
    for (const wake of this.waiters.splice(0)) wake();
  }
}
