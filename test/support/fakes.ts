import type { ComponentHealth, HealthCheckClient } from '../../lib/types';

/** A dependency whose answers the test controls, counting how often it is asked. */
export class FakeClient implements HealthCheckClient {
  calls = 0;
  status: ComponentHealth['status'] = 'ok';
  error: string | undefined;
  /** When set, checks wait until the test calls release(). */
  held = false;
  private waiting: (() => void)[] = [];

  healthCheck(): Promise<ComponentHealth> {
    this.calls += 1;
    const answer = (): ComponentHealth => ({
      status: this.status,
      latencyMs: 1,
      checkedAt: new Date().toISOString(),
      ...(this.error === undefined ? {} : { error: this.error }),
    });
    if (!this.held) return Promise.resolve(answer());
    return new Promise((resolve) => {
      this.waiting.push(() => {
        resolve(answer());
      });
    });
  }

  release(): void {
    for (const resolve of this.waiting.splice(0)) resolve();
  }
}
