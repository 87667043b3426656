import type { Settings, VaultClient } from '../types';
import { Upstream, type StatusJudge } from './upstream';

/** Standbys answer 200 with these flags: they serve (or forward) requests, so they count as up. */
export const VAULT_HEALTH_PATH = '/v1/sys/health?standbyok=true&perfstandbyok=true';

const VAULT_PROBLEMS: Readonly<Record<number, string | undefined>> = {
  200: undefined,
  429: undefined,
  473: undefined,
  472: 'disaster-recovery secondary',
  474: 'standby cannot reach the active node',
  501: 'not initialized',
  503: 'sealed',
  530: 'removed from the cluster',
};

/** Reads Vault's documented sys/health status codes. */
export const judgeVaultStatus: StatusJudge = (status) =>
  status in VAULT_PROBLEMS ? VAULT_PROBLEMS[status] : `unexpected status ${status}`;

/** Checks Vault's sys/health endpoint, which needs no token. */
export class HttpVaultClient implements VaultClient {
  private readonly upstream: Upstream;

  constructor(vaultAddr: string, timeoutMs: number) {
    this.upstream = new Upstream(vaultAddr, timeoutMs);
  }

  healthCheck() {
    return this.upstream.check(VAULT_HEALTH_PATH, judgeVaultStatus);
  }

  close(): void {
    this.upstream.close();
  }
}

export function buildVaultClient(settings: Settings): VaultClient {
  return new HttpVaultClient(settings.VAULT_ADDR, settings.READINESS_TIMEOUT_MS);
}
