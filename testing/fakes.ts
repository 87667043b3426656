import type { ComponentHealth } from '../lib/health';
import type { VaultClient } from '../lib/clients/vault';

/** A dependency whose answers the test controls, counting how often it is asked. */
export class FakeClient implements VaultClient {
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

  /** Secrets readSecret() answers with, by path; a missing path rejects. */
  secrets: Record<string, Record<string, unknown>> = {};
  secretReads = 0;

  readSecret(path: string): Promise<Record<string, unknown>> {
    this.secretReads += 1;
    const secret = this.secrets[path];
    return secret === undefined
      ? Promise.reject(new Error(`no secret at ${path}`))
      : Promise.resolve(secret);
  }

  release(): void {
    for (const resolve of this.waiting.splice(0)) resolve();
  }
}
