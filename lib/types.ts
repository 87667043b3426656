export type NodeEnv = 'production' | 'development' | 'test';
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** The runtime's settings, named as the environment variables that set them. */
export interface Settings {
  readonly PORT: number;
  readonly NODE_ENV: NodeEnv;
  readonly VAULT_ADDR: string;
  readonly ORY_URL: string;
  readonly ORY_HEALTH_PATH: string;
  readonly METRICS_PATH: string;
  readonly READINESS_TIMEOUT_MS: number;
  readonly READINESS_CACHE_TTL_MS: number;
  readonly LOG_LEVEL: LogLevel;
  readonly VAULT_TOKEN: string;
  readonly VAULT_TOKEN_FILE: string;
  readonly VAULT_K8S_ROLE: string;
  readonly VAULT_K8S_MOUNT: string;
  readonly VAULT_K8S_JWT_FILE: string;
  readonly VAULT_KV_MOUNT: string;
  readonly SLACK_SIGNING_SECRET: string;
  readonly SLACK_SIGNING_SECRET_VAULT_PATH: string;
  readonly SLACK_SIGNING_SECRET_VAULT_KEY: string;
  readonly SLACK_SECRET_TTL_MS: number;
  readonly SLACK_MAX_BODY_BYTES: number;
}

export const HEALTH_PATH_PREFIX = '/health/';
export const LIVE_PATH = '/health/live';
export const READY_PATH = '/health/ready';

export const COMPONENT_OK = 'ok';
export const COMPONENT_UNAVAILABLE = 'unavailable';
export type ComponentStatus = typeof COMPONENT_OK | typeof COMPONENT_UNAVAILABLE;

/** The outcome of one dependency check, as /health/ready reports it. */
export interface ComponentHealth {
  status: ComponentStatus;
  latencyMs: number;
  /** ISO-8601 time the check finished. */
  checkedAt: string;
  /** Why the component is unavailable, in words; never an upstream body, header or token. */
  error?: string;
}

/** A finished check: ok without a problem, else unavailable with the problem as its reason. */
export function componentHealth(latencyMs: number, problem?: string): ComponentHealth {
  return {
    status: problem === undefined ? COMPONENT_OK : COMPONENT_UNAVAILABLE,
    latencyMs: Math.round(latencyMs),
    checkedAt: new Date().toISOString(),
    ...(problem === undefined ? {} : { error: problem }),
  };
}

/** A dependency the readiness checker can ask. */
export interface HealthCheckClient {
  healthCheck(): Promise<ComponentHealth>;
  /** Releases sockets; the client is not used afterwards. */
  close?(): void;
}

export interface VaultClient extends HealthCheckClient {
  /** The data of a KV v2 secret; rejects with a reason that holds no secret or token. */
  readSecret(path: string): Promise<Record<string, unknown>>;
}
export type OryClient = HealthCheckClient;

export type VaultClientFactory = (settings: Settings) => VaultClient;
export type OryClientFactory = (settings: Settings) => OryClient;

export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}
