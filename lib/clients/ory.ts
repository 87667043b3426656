import type { Settings } from '../config/settings';
import type { HealthCheckClient } from '../health';
import { Upstream, type StatusJudge } from '../http/upstream';

export type OryClient = HealthCheckClient;
export type OryClientFactory = (settings: Settings) => OryClient;

/** Ory's ready handler answers 200 or 503; its 503 body has no stable shape, so only the code counts. */
export const judgeOryStatus: StatusJudge = (status) =>
  status === 200 ? undefined : `status ${status}`;

/** Checks an Ory service (Kratos, Hydra, Keto or Oathkeeper) on its readiness path. */
export class HttpOryClient implements OryClient {
  private readonly upstream: Upstream;

  constructor(
    oryUrl: string,
    private readonly healthPath: string,
    timeoutMs: number,
  ) {
    this.upstream = new Upstream(oryUrl, timeoutMs);
  }

  healthCheck() {
    return this.upstream.check(this.healthPath, judgeOryStatus);
  }

  close(): void {
    this.upstream.close();
  }
}

export function buildOryClient(settings: Settings): OryClient {
  return new HttpOryClient(
    settings.ORY_URL,
    settings.ORY_HEALTH_PATH,
    settings.READINESS_TIMEOUT_MS,
  );
}
