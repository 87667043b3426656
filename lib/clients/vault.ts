import type { Settings } from '../config/settings';
import { UpstreamError } from '../errors';
import type { HealthCheckClient } from '../health';
import { Upstream, type StatusJudge } from '../http/upstream';
import type { Redactor } from '../redactor';
import { FileToken, KubernetesLogin, StaticToken, type VaultTokenSource } from './vault-auth';

export interface VaultClient extends HealthCheckClient {
  /** The data of a KV v2 secret; rejects with a reason that holds no secret or token. */
  readSecret(path: string): Promise<Record<string, unknown>>;
}
/** What a Vault client may be given besides the settings. */
export interface VaultDependencies {
  /** Told every token used, so that no log line carries one. */
  redactor?: Redactor;
}
export type VaultClientFactory = (settings: Settings, deps?: VaultDependencies) => VaultClient;

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

export interface VaultClientOptions {
  /** Builds the token source over this client's connection; none means no secrets can be read. */
  tokens?: (upstream: Upstream) => VaultTokenSource;
  /** Mount of the KV version 2 secrets engine. */
  kvMount?: string;
  /** Timeout of each secret read (health checks use the client's timeout). */
  secretTimeoutMs?: number;
}

/** Checks Vault's sys/health endpoint (no token) and reads KV v2 secrets (with one). */
export class HttpVaultClient implements VaultClient {
  private readonly upstream: Upstream;
  private readonly tokens: VaultTokenSource | undefined;
  private readonly kvMount: string;
  private readonly secretTimeoutMs: number;

  constructor(vaultAddr: string, timeoutMs: number, options: VaultClientOptions = {}) {
    this.upstream = new Upstream(vaultAddr, timeoutMs);
    this.tokens = options.tokens?.(this.upstream);
    this.kvMount = options.kvMount ?? 'secret';
    this.secretTimeoutMs = options.secretTimeoutMs ?? timeoutMs;
  }

  healthCheck() {
    return this.upstream.check(VAULT_HEALTH_PATH, judgeVaultStatus);
  }

  /**
   * The data of the latest version of a KV v2 secret. A 403 (token expired or revoked) makes the
   * token source read or log in again, once, before the read is retried.
   */
  async readSecret(path: string): Promise<Record<string, unknown>> {
    if (this.tokens === undefined) throw new UpstreamError('no Vault token is configured');
    const where = `${this.kvMount}/${path}`;
    const url = `/v1/${this.kvMount}/data/${path.split('/').map(encodeURIComponent).join('/')}`;
    // Stryker disable next-line AssignmentOperator: attempt is only compared with 1, which -= leaves as += does
    for (let attempt = 1; ; attempt += 1) {
      const token = await this.tokens.token();
      const res = await this.upstream.request('GET', url, {
        headers: { 'X-Vault-Token': token },
        timeoutMs: this.secretTimeoutMs,
      });
      if (res.status === 403 && attempt === 1) {
        this.tokens.invalidate();
        continue;
      }
      if (res.status === 200) return secretData(res.body, where);
      if (res.status === 404) throw new UpstreamError(`no secret at ${where}`);
      if (res.status === 403) throw new UpstreamError(`permission denied reading ${where}`);
      throw new UpstreamError(`unexpected status ${res.status} reading ${where}`);
    }
  }

  close(): void {
    this.upstream.close();
  }
}

function secretData(body: Buffer, where: string): Record<string, unknown> {
  try {
    const data = (JSON.parse(body.toString('utf8')) as { data?: { data?: unknown } }).data?.data;
    if (data !== null && typeof data === 'object') return data as Record<string, unknown>;
  } catch {
    // reported below, without the body
  }
  throw new UpstreamError(`unreadable secret at ${where}`);
}

/** A token source whose every token is reported to the redactor. */
function reported(source: VaultTokenSource, redactor: Redactor | undefined): VaultTokenSource {
  if (redactor === undefined) return source;
  return {
    token: async () => {
      const token = await source.token();
      redactor.add(token);
      return token;
    },
    invalidate: () => {
      source.invalidate();
    },
  };
}

/** The token source the settings name; settings validation allows at most one. */
function tokenSource(settings: Settings): VaultClientOptions['tokens'] {
  if (settings.VAULT_TOKEN !== '') return () => new StaticToken(settings.VAULT_TOKEN);
  if (settings.VAULT_TOKEN_FILE !== '') {
    return () => new FileToken(settings.VAULT_TOKEN_FILE, settings.VAULT_TOKEN_FILE_REREAD_MS);
  }
  if (settings.VAULT_K8S_ROLE !== '') {
    return (upstream) =>
      new KubernetesLogin(upstream, {
        mount: settings.VAULT_K8S_MOUNT,
        role: settings.VAULT_K8S_ROLE,
        jwtFile: settings.VAULT_K8S_JWT_FILE,
        timeoutMs: settings.VAULT_REQUEST_TIMEOUT_MS,
        noLeaseReuseMs: settings.VAULT_K8S_TOKEN_TTL_MS,
      });
  }
  return undefined;
}

export function buildVaultClient(settings: Settings, deps: VaultDependencies = {}): VaultClient {
  const tokens = tokenSource(settings);
  return new HttpVaultClient(settings.VAULT_ADDR, settings.READINESS_TIMEOUT_MS, {
    tokens: tokens && ((upstream) => reported(tokens(upstream), deps.redactor)),
    kvMount: settings.VAULT_KV_MOUNT,
    secretTimeoutMs: settings.VAULT_REQUEST_TIMEOUT_MS,
  });
}

/**
 * Reads one text value of a KV v2 secret, for a CachedSecret: the reason names the mount, path
 * and key, never the value.
 */
export function vaultSecretValue(
  vault: VaultClient,
  where: { mount: string; path: string; key: string },
): () => Promise<string> {
  return async () => {
    const value = (await vault.readSecret(where.path))[where.key];
    if (typeof value !== 'string' || value === '') {
      throw new UpstreamError(`no "${where.key}" in ${where.mount}/${where.path}`);
    }
    return value;
  };
}

/**
 * The same client, reporting every text value of each secret it reads to the redactor: whatever
 * reads a secret from Vault (the signing secret, the database password, the bot token), no log
 * line carries it.
 */
export function reportingSecrets(vault: VaultClient, redactor: Redactor): VaultClient {
  return {
    healthCheck: () => vault.healthCheck(),
    readSecret: async (path) => {
      const data = await vault.readSecret(path);
      for (const value of Object.values(data)) if (typeof value === 'string') redactor.add(value);
      return data;
    },
    close: () => vault.close?.(),
  };
}
