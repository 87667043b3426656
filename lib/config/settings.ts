import convict from 'convict';
import { HEALTH_PATH_PREFIX } from '../health';
import { LOG_LEVELS, type LogLevel } from '../logger';
import {
  absoluteFile,
  anyText,
  ceOverrides,
  headerName,
  httpUrl,
  listenHost,
  oidcAudience,
  oidcSubjects,
  pgHost,
  pgName,
  redactValue,
  strictBoolean,
  strictInteger,
  urlPath,
  vaultName,
} from './formats';

export const NODE_ENVS = ['production', 'development', 'test'] as const;
export type NodeEnv = (typeof NODE_ENVS)[number];

/** The libpq sslmode values node-postgres can honour (it has no fallback for allow or prefer). */
export const PG_SSL_MODES = ['disable', 'require', 'verify-ca', 'verify-full'] as const;
export type PgSslMode = (typeof PG_SSL_MODES)[number];

/**
 * What the image's entry can serve (FUNCTION_TARGET): every endpoint, one of them alone, or one of
 * the functions Knative Eventing delivers to.
 */
export const FUNCTION_TARGETS = [
  'coffeebuddy',
  'healthLive',
  'healthReady',
  'metrics',
  'slack',
  'slackWorker',
  'slackDeadLetter',
] as const;
export type FunctionTarget = (typeof FUNCTION_TARGETS)[number];

/** Exit status of an entry refused its settings (sysexits EX_CONFIG). */
export const EXIT_CONFIG = 78;

/** Where Slack's response URLs live: the only prefix respond() may post to in production. */
export const SLACK_HOOKS_PREFIX = 'https://hooks.slack.com/';

/** Thrown when the environment holds bad settings; its message names every bad variable. */
export class SettingsError extends Error {
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(`Invalid settings:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'SettingsError';
    this.problems = problems;
  }
}

const port = strictInteger(1, 65535);
const timeoutMs = strictInteger(1, 60_000);
const ttlMs = strictInteger(0, 3_600_000);
const secretTtlMs = strictInteger(1000, 86_400_000);
const bodyBytes = strictInteger(1024, 10 * 1024 * 1024);
const defaultBodyBytes = strictInteger(0, 1024 * 1024);
const keepAliveMs = strictInteger(1000, 600_000);
const shutdownMs = strictInteger(0, 600_000);
const staleMs = strictInteger(0, 86_400_000);
const pendingWork = strictInteger(1, 10_000);
const eventsInFlight = strictInteger(1, 1000);
const poolSize = strictInteger(1, 100);
const leaseMs = strictInteger(1000, 600_000);
const retentionMs = strictInteger(3_600_000, 90 * 86_400_000);
const deadRows = strictInteger(1, 1_000_000);
/** The sink's answer must come, with the ack's own way back, inside Slack's 3 seconds. */
const publishTimeoutMs = strictInteger(1, 2500);
const FORMATS = [
  port,
  timeoutMs,
  ttlMs,
  secretTtlMs,
  bodyBytes,
  defaultBodyBytes,
  keepAliveMs,
  shutdownMs,
  staleMs,
  pendingWork,
  eventsInFlight,
  poolSize,
  leaseMs,
  retentionMs,
  deadRows,
  publishTimeoutMs,
  listenHost,
  oidcAudience,
  oidcSubjects,
  pgHost,
  pgName,
  headerName,
  strictBoolean,
  httpUrl,
  urlPath,
  absoluteFile,
  vaultName,
  anyText,
  ceOverrides,
  oidcAudience,
  oidcSubjects,
];

const schema = {
  PORT: { doc: 'Listen port', format: port.name, default: 8080, env: 'PORT' },
  LISTEN_HOST: {
    doc: 'Address the server listens on; empty for every interface',
    format: listenHost.name,
    default: '',
    env: 'LISTEN_HOST',
  },
  MAX_BODY_BYTES: {
    doc: 'Largest request body accepted on routes other than Slack’s',
    format: defaultBodyBytes.name,
    default: 16_384,
    env: 'MAX_BODY_BYTES',
  },
  KEEP_ALIVE_TIMEOUT_MS: {
    doc: 'How long an idle keep-alive connection is kept: above queue-proxy’s 90 s',
    format: keepAliveMs.name,
    default: 95_000,
    env: 'KEEP_ALIVE_TIMEOUT_MS',
  },
  SHUTDOWN_TIMEOUT_MS: {
    doc: 'Longest a drain waits for requests and work after SIGTERM before the process exits',
    format: shutdownMs.name,
    default: 20_000,
    env: 'SHUTDOWN_TIMEOUT_MS',
  },
  NODE_ENV: {
    doc: 'production, development or test',
    format: [...NODE_ENVS],
    default: 'development' as NodeEnv,
    env: 'NODE_ENV',
  },
  VAULT_ADDR: { doc: 'Vault base URL', format: httpUrl.name, default: '', env: 'VAULT_ADDR' },
  ORY_URL: { doc: 'Ory base URL', format: httpUrl.name, default: '', env: 'ORY_URL' },
  ORY_HEALTH_PATH: {
    doc: 'Readiness path on Ory',
    format: urlPath.name,
    default: '/health/ready',
    env: 'ORY_HEALTH_PATH',
  },
  METRICS_PATH: {
    doc: 'Path of the Prometheus endpoint',
    format: urlPath.name,
    default: '/metrics',
    env: 'METRICS_PATH',
  },
  READINESS_TIMEOUT_MS: {
    doc: 'Longest a readiness answer may take, and each health check request',
    format: timeoutMs.name,
    default: 800,
    env: 'READINESS_TIMEOUT_MS',
  },
  READINESS_CACHE_TTL_MS: {
    doc: 'How long a dependency result is reused',
    format: ttlMs.name,
    default: 1000,
    env: 'READINESS_CACHE_TTL_MS',
  },
  REQUEST_ID_HEADER: {
    doc: 'Header carrying the request id in and out (Kong correlation-id’s header_name)',
    format: headerName.name,
    default: 'X-Request-ID',
    env: 'REQUEST_ID_HEADER',
  },
  ACCESS_LOG_PROBES: {
    doc: 'Whether probes and scrapes get access log lines too',
    format: strictBoolean.name,
    default: false,
    env: 'ACCESS_LOG_PROBES',
  },
  LOG_LEVEL: {
    doc: 'debug, info, warn or error',
    format: [...LOG_LEVELS],
    default: 'info' as LogLevel,
    env: 'LOG_LEVEL',
  },
  VAULT_TOKEN: {
    doc: 'A Vault token',
    format: anyText.name,
    default: '',
    env: 'VAULT_TOKEN',
    sensitive: true,
  },
  VAULT_TOKEN_FILE: {
    doc: 'File holding a Vault token (Vault Agent sink)',
    format: absoluteFile.name,
    default: '',
    env: 'VAULT_TOKEN_FILE',
  },
  VAULT_TOKEN_FILE_REREAD_MS: {
    doc: 'How often the Vault token file is read again (Vault Agent rewrites it when it renews)',
    format: secretTtlMs.name,
    default: 300_000,
    env: 'VAULT_TOKEN_FILE_REREAD_MS',
  },
  VAULT_REQUEST_TIMEOUT_MS: {
    doc: 'Timeout of each Vault request for a secret or a login',
    format: timeoutMs.name,
    default: 1000,
    env: 'VAULT_REQUEST_TIMEOUT_MS',
  },
  VAULT_K8S_ROLE: {
    doc: 'Vault role for Kubernetes auth',
    format: vaultName.name,
    default: '',
    env: 'VAULT_K8S_ROLE',
  },
  VAULT_K8S_TOKEN_TTL_MS: {
    doc: 'How long a Kubernetes-auth token is reused when Vault reports no lease (0)',
    format: secretTtlMs.name,
    default: 300_000,
    env: 'VAULT_K8S_TOKEN_TTL_MS',
  },
  VAULT_K8S_MOUNT: {
    doc: 'Mount of the Kubernetes auth method',
    format: vaultName.name,
    default: 'kubernetes',
    env: 'VAULT_K8S_MOUNT',
  },
  VAULT_K8S_JWT_FILE: {
    doc: 'The service-account token used for Kubernetes auth',
    format: absoluteFile.name,
    default: '/var/run/secrets/kubernetes.io/serviceaccount/token',
    env: 'VAULT_K8S_JWT_FILE',
  },
  VAULT_KV_MOUNT: {
    doc: 'Mount of the KV v2 secrets engine',
    format: vaultName.name,
    default: 'secret',
    env: 'VAULT_KV_MOUNT',
  },
  SLACK_SIGNING_SECRET: {
    doc: 'Slack signing secret, outside production only',
    format: anyText.name,
    default: '',
    env: 'SLACK_SIGNING_SECRET',
    sensitive: true,
  },
  SLACK_SIGNING_SECRET_VAULT_PATH: {
    doc: 'KV v2 path of the secret holding the Slack signing secret',
    format: vaultName.name,
    default: '',
    env: 'SLACK_SIGNING_SECRET_VAULT_PATH',
  },
  SLACK_SIGNING_SECRET_VAULT_KEY: {
    doc: 'Key of the signing secret inside that secret',
    format: vaultName.name,
    default: 'signing_secret',
    env: 'SLACK_SIGNING_SECRET_VAULT_KEY',
  },
  SLACK_SECRET_TTL_MS: {
    doc: 'How long the signing secret and the bot token are reused before they are read again',
    format: secretTtlMs.name,
    default: 300_000,
    env: 'SLACK_SECRET_TTL_MS',
  },
  SLACK_SECRET_STALE_MS: {
    doc: 'How long past their TTL the signing secret and bot token are still used while reading them again fails',
    format: staleMs.name,
    default: 3_600_000,
    env: 'SLACK_SECRET_STALE_MS',
  },
  SLACK_BOT_TOKEN: {
    doc: 'Slack bot token (xoxb-…), outside production only',
    format: anyText.name,
    default: '',
    env: 'SLACK_BOT_TOKEN',
    sensitive: true,
  },
  SLACK_BOT_TOKEN_VAULT_PATH: {
    doc: 'KV v2 path of the secret holding the Slack bot token',
    format: vaultName.name,
    default: '',
    env: 'SLACK_BOT_TOKEN_VAULT_PATH',
  },
  SLACK_BOT_TOKEN_VAULT_KEY: {
    doc: 'Key of the bot token inside that secret',
    format: vaultName.name,
    default: 'bot_token',
    env: 'SLACK_BOT_TOKEN_VAULT_KEY',
  },
  SLACK_API_URL: {
    doc: 'Base URL of Slack’s Web API (method names are appended); https only in production',
    format: httpUrl.name,
    default: 'https://slack.com/api/',
    env: 'SLACK_API_URL',
  },
  SLACK_RESPONSE_URL_PREFIX: {
    doc: 'Where respond() may post: response URLs must start with it (Slack’s hooks only in production)',
    format: httpUrl.name,
    default: SLACK_HOOKS_PREFIX,
    env: 'SLACK_RESPONSE_URL_PREFIX',
  },
  SLACK_API_TIMEOUT_MS: {
    doc: 'Longest one Slack Web API request may take, connection and answer',
    format: timeoutMs.name,
    default: 5000,
    env: 'SLACK_API_TIMEOUT_MS',
  },
  SLACK_MAX_PENDING_WORK: {
    doc: 'Most Slack handlers running after their acknowledgement at once; beyond, 503',
    format: pendingWork.name,
    default: 100,
    env: 'SLACK_MAX_PENDING_WORK',
  },
  SLACK_MAX_BODY_BYTES: {
    doc: 'Largest Slack request body accepted',
    format: bodyBytes.name,
    default: 65_536,
    env: 'SLACK_MAX_BODY_BYTES',
  },
  K_SINK: {
    doc: 'Where verified Slack events and interactions are published as CloudEvents (SinkBinding)',
    format: httpUrl.name,
    default: '',
    env: 'K_SINK',
  },
  K_CE_OVERRIDES: {
    doc: 'JSON {"extensions":{"name":"value"}}: extensions added to every published CloudEvent',
    format: ceOverrides.name,
    default: '',
    env: 'K_CE_OVERRIDES',
    // Never echoed in an error: its values are whatever the SinkBinding was given.
    sensitive: true,
  },
  SLACK_PUBLISH_TIMEOUT_MS: {
    doc: 'Longest a publish to K_SINK may take, connection and answer, before Slack gets a 503',
    format: publishTimeoutMs.name,
    default: 1500,
    env: 'SLACK_PUBLISH_TIMEOUT_MS',
  },
  PGHOST: {
    doc: 'PostgreSQL host name, IP address or socket directory',
    format: pgHost.name,
    default: 'localhost',
    env: 'PGHOST',
  },
  PGPORT: { doc: 'PostgreSQL port', format: port.name, default: 5432, env: 'PGPORT' },
  PGDATABASE: {
    doc: 'PostgreSQL database',
    format: pgName.name,
    default: 'coffeebuddy',
    env: 'PGDATABASE',
  },
  PGUSER: { doc: 'PostgreSQL role', format: pgName.name, default: 'coffeebuddy', env: 'PGUSER' },
  PGPASSWORD: {
    doc: 'PostgreSQL password, outside production only',
    format: anyText.name,
    default: '',
    env: 'PGPASSWORD',
    sensitive: true,
  },
  PGSSLMODE: {
    doc: 'disable, require, verify-ca or verify-full',
    format: [...PG_SSL_MODES],
    default: 'verify-full' as PgSslMode,
    env: 'PGSSLMODE',
  },
  PGSSLROOTCERT: {
    doc: 'CA certificates PostgreSQL’s certificate is verified against; empty for Node’s own',
    format: absoluteFile.name,
    default: '',
    env: 'PGSSLROOTCERT',
  },
  PG_PASSWORD_VAULT_PATH: {
    doc: 'KV v2 path of the secret holding the PostgreSQL password',
    format: vaultName.name,
    default: '',
    env: 'PG_PASSWORD_VAULT_PATH',
  },
  PG_PASSWORD_VAULT_KEY: {
    doc: 'Key of the password inside that secret',
    format: vaultName.name,
    default: 'password',
    env: 'PG_PASSWORD_VAULT_KEY',
  },
  PG_PASSWORD_TTL_MS: {
    doc: 'How long the PostgreSQL password is reused before it is read again',
    format: secretTtlMs.name,
    default: 300_000,
    env: 'PG_PASSWORD_TTL_MS',
  },
  PG_PASSWORD_STALE_MS: {
    doc: 'How long past its TTL the password is still used while reading it again fails',
    format: staleMs.name,
    default: 3_600_000,
    env: 'PG_PASSWORD_STALE_MS',
  },
  PG_POOL_MAX: {
    doc: 'Most PostgreSQL connections this process holds',
    format: poolSize.name,
    default: 10,
    env: 'PG_POOL_MAX',
  },
  PG_CONNECT_TIMEOUT_MS: {
    doc: 'Longest wait for a connection: a new one, or a free one when the pool is full',
    format: timeoutMs.name,
    default: 2000,
    env: 'PG_CONNECT_TIMEOUT_MS',
  },
  PG_STATEMENT_TIMEOUT_MS: {
    doc: 'statement_timeout of every connection: longer statements are cancelled by the server',
    format: timeoutMs.name,
    default: 5000,
    env: 'PG_STATEMENT_TIMEOUT_MS',
  },
  FUNCTION_TARGET: {
    doc: 'The function the image serves: coffeebuddy (every endpoint), slackWorker or slackDeadLetter',
    format: [...FUNCTION_TARGETS],
    default: 'coffeebuddy' as FunctionTarget,
    env: 'FUNCTION_TARGET',
  },
  SLACK_HANDLER_TIMEOUT_MS: {
    doc: 'Longest the worker lets one event’s handlers run before the attempt fails',
    format: timeoutMs.name,
    default: 10_000,
    env: 'SLACK_HANDLER_TIMEOUT_MS',
  },
  SLACK_WORK_LEASE_MS: {
    doc: 'How long a worker’s claim on an event holds before another worker may take it over',
    format: leaseMs.name,
    default: 30_000,
    env: 'SLACK_WORK_LEASE_MS',
  },
  SLACK_WORK_RETENTION_MS: {
    doc: 'How long done events are remembered, so that a redelivery is not run again',
    format: retentionMs.name,
    default: 86_400_000,
    env: 'SLACK_WORK_RETENTION_MS',
  },
  SLACK_DEAD_RETENTION_MS: {
    doc: 'How long dead events (and replayed ones) are kept, with their data, for reading and replay',
    format: retentionMs.name,
    default: 7 * 86_400_000,
    env: 'SLACK_DEAD_RETENTION_MS',
  },
  SLACK_DEAD_MAX_ROWS: {
    doc: 'Most dead events kept; beyond, the oldest are removed first (and counted)',
    format: deadRows.name,
    default: 10_000,
    env: 'SLACK_DEAD_MAX_ROWS',
  },
  EVENT_MAX_IN_FLIGHT: {
    doc: 'Most CloudEvent deliveries the worker or dead-letter function takes at once; beyond, 429',
    format: eventsInFlight.name,
    // Each may hold ~2 MiB of heap once parsed (an 80 KiB body built to be expensive): 20, the
    // worker's containerConcurrency, keep a flood under 200 MiB RSS (docs/operations.md).
    default: 20,
    env: 'EVENT_MAX_IN_FLIGHT',
  },
  EVENTING_OIDC_AUDIENCE: {
    doc: 'The audience every event delivery’s Bearer token must name; none to take deliveries unauthenticated',
    format: oidcAudience.name,
    default: '',
    env: 'EVENTING_OIDC_AUDIENCE',
  },
  EVENTING_OIDC_ISSUER: {
    doc: 'The issuer of the delivery tokens: the cluster’s service-account issuer',
    format: httpUrl.name,
    default: 'https://kubernetes.default.svc.cluster.local',
    env: 'EVENTING_OIDC_ISSUER',
  },
  EVENTING_OIDC_JWKS_URL: {
    doc: 'Where the issuer’s keys are read; empty to take jwks_uri from its OpenID discovery document',
    format: httpUrl.name,
    default: '',
    env: 'EVENTING_OIDC_JWKS_URL',
  },
  EVENTING_OIDC_SUBJECTS: {
    doc: 'Comma list of the token subjects (service accounts) allowed to deliver; empty for any',
    format: oidcSubjects.name,
    default: '',
    env: 'EVENTING_OIDC_SUBJECTS',
  },
  EVENTING_OIDC_TOKEN_FILE: {
    doc: 'The service-account token sent as Bearer to read the issuer’s keys; empty for none',
    format: absoluteFile.name,
    default: '/var/run/secrets/kubernetes.io/serviceaccount/token',
    env: 'EVENTING_OIDC_TOKEN_FILE',
  },
  EVENTING_OIDC_CA_FILE: {
    doc: 'CA certificates the issuer’s certificate is verified against; empty for Node’s own',
    format: absoluteFile.name,
    default: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt',
    env: 'EVENTING_OIDC_CA_FILE',
  },
};

/** The runtime's settings, named as the environment variables that set them: one list, the schema. */
export type Settings = {
  readonly [Name in keyof typeof schema]: (typeof schema)[Name]['default'];
};

/** Time a worker needs around its handlers (claim, record) inside its lease. */
const LEASE_MARGIN_MS = 1000;

const VAULT_AUTH_SETTINGS = ['VAULT_TOKEN', 'VAULT_TOKEN_FILE', 'VAULT_K8S_ROLE'] as const;

/** The rules between settings that no single format can express. */
function crossProblems(settings: Settings): string[] {
  const problems: string[] = [];
  const metricsPath = settings.METRICS_PATH;
  if (
    metricsPath === HEALTH_PATH_PREFIX.slice(0, -1) ||
    metricsPath.startsWith(HEALTH_PATH_PREFIX)
  ) {
    problems.push(`METRICS_PATH: must not be /health or under ${HEALTH_PATH_PREFIX}`);
  }
  const auth = VAULT_AUTH_SETTINGS.filter((name) => settings[name] !== '');
  if (auth.length > 1) {
    problems.push(`${auth.join(', ')}: set only one Vault authentication method`);
  }
  const vaultPath = settings.SLACK_SIGNING_SECRET_VAULT_PATH !== '';
  if (settings.SLACK_SIGNING_SECRET !== '') {
    if (settings.NODE_ENV === 'production') {
      problems.push(
        'SLACK_SIGNING_SECRET: not allowed in production; set SLACK_SIGNING_SECRET_VAULT_PATH',
      );
    }
    if (vaultPath) {
      problems.push('SLACK_SIGNING_SECRET, SLACK_SIGNING_SECRET_VAULT_PATH: set only one');
    }
  }
  if (vaultPath && auth.length === 0) {
    problems.push(
      `SLACK_SIGNING_SECRET_VAULT_PATH: needs one of ${VAULT_AUTH_SETTINGS.join(', ')}`,
    );
  }
  problems.push(...slackApiProblems(settings, auth.length > 0));
  problems.push(...postgresProblems(settings, auth.length > 0));
  problems.push(...eventAuthenticationProblems(settings, settings.FUNCTION_TARGET));
  if (settings.SLACK_WORK_LEASE_MS < settings.SLACK_HANDLER_TIMEOUT_MS + LEASE_MARGIN_MS) {
    problems.push(
      `SLACK_WORK_LEASE_MS: must be at least SLACK_HANDLER_TIMEOUT_MS + ${LEASE_MARGIN_MS}, so that a live worker keeps its claim`,
    );
  }
  return problems;
}

/** The functions Knative Eventing delivers to: apps of their own, which use the database. */
export const EVENT_FUNCTION_TARGETS: readonly FunctionTarget[] = ['slackWorker', 'slackDeadLetter'];

/** EVENTING_OIDC_AUDIENCE's word for "deliveries are not authenticated, on purpose". */
export const NO_AUDIENCE = 'none';

/**
 * Who may deliver events: in production an event function needs an audience (or `none`, said
 * explicitly), and the issuer's keys are read over https only.
 */
export function eventAuthenticationProblems(settings: Settings, target: FunctionTarget): string[] {
  const problems: string[] = [];
  const production = settings.NODE_ENV === 'production';
  if (
    production &&
    settings.EVENTING_OIDC_AUDIENCE === '' &&
    EVENT_FUNCTION_TARGETS.includes(target)
  ) {
    problems.push(
      `EVENTING_OIDC_AUDIENCE: must be set for ${target} in production (the Trigger's subscriber audience), or "${NO_AUDIENCE}" to take deliveries unauthenticated`,
    );
  }
  if (settings.EVENTING_OIDC_ISSUER.endsWith('/')) {
    problems.push(
      'EVENTING_OIDC_ISSUER: must not end with "/": it is compared with the tokens\' iss exactly',
    );
  }
  for (const name of ['EVENTING_OIDC_ISSUER', 'EVENTING_OIDC_JWKS_URL'] as const) {
    if (production && settings[name].startsWith('http:')) {
      problems.push(`${name}: must be https:// in production`);
    }
  }
  return problems;
}

/** The Web API rules: the bot token from one place, and Slack reached over TLS in production. */
function slackApiProblems(settings: Settings, vaultAuth: boolean): string[] {
  const problems: string[] = [];
  const vaultPath = settings.SLACK_BOT_TOKEN_VAULT_PATH !== '';
  if (settings.SLACK_BOT_TOKEN !== '') {
    if (settings.NODE_ENV === 'production') {
      problems.push('SLACK_BOT_TOKEN: not allowed in production; set SLACK_BOT_TOKEN_VAULT_PATH');
    }
    if (vaultPath) problems.push('SLACK_BOT_TOKEN, SLACK_BOT_TOKEN_VAULT_PATH: set only one');
  }
  if (vaultPath && !vaultAuth) {
    problems.push(`SLACK_BOT_TOKEN_VAULT_PATH: needs one of ${VAULT_AUTH_SETTINGS.join(', ')}`);
  }
  if (settings.SLACK_API_URL === '') {
    problems.push('SLACK_API_URL: must be set');
  } else if (settings.NODE_ENV === 'production' && !settings.SLACK_API_URL.startsWith('https:')) {
    problems.push(
      'SLACK_API_URL: must be an https:// URL in production (the bot token goes with every call)',
    );
  }
  const prefix = settings.SLACK_RESPONSE_URL_PREFIX;
  if (settings.NODE_ENV === 'production' && prefix !== SLACK_HOOKS_PREFIX) {
    problems.push(`SLACK_RESPONSE_URL_PREFIX: must be ${SLACK_HOOKS_PREFIX} in production`);
  } else if (!prefix.endsWith('/')) {
    problems.push('SLACK_RESPONSE_URL_PREFIX: must end with / (a host is never a prefix)');
  }
  return problems;
}

/** The PostgreSQL rules: the password from one place, and the CA file only where it is used. */
function postgresProblems(settings: Settings, vaultAuth: boolean): string[] {
  const problems: string[] = [];
  const vaultPath = settings.PG_PASSWORD_VAULT_PATH !== '';
  if (settings.PGPASSWORD !== '') {
    if (settings.NODE_ENV === 'production') {
      problems.push('PGPASSWORD: not allowed in production; set PG_PASSWORD_VAULT_PATH');
    }
    if (vaultPath) problems.push('PGPASSWORD, PG_PASSWORD_VAULT_PATH: set only one');
  }
  if (vaultPath && !vaultAuth) {
    problems.push(`PG_PASSWORD_VAULT_PATH: needs one of ${VAULT_AUTH_SETTINGS.join(', ')}`);
  }
  if (settings.PGSSLROOTCERT !== '' && !settings.PGSSLMODE.startsWith('verify-')) {
    problems.push('PGSSLROOTCERT: used only with PGSSLMODE verify-ca or verify-full');
  }
  return problems;
}

/** Defaults that apply only outside production, where a local Vault and Ory are the norm. */
export const DEVELOPMENT_URLS = {
  VAULT_ADDR: 'http://127.0.0.1:8200',
  ORY_URL: 'http://127.0.0.1:4434',
} as const;

/** Names of the environment variables the runtime reads. */
export const SETTING_NAMES = Object.keys(schema) as (keyof Settings)[];

/** The settings that hold secrets (convict-`sensitive`): never logged. */
export const SENSITIVE_SETTINGS = SETTING_NAMES.filter(
  (name) => (schema[name] as { sensitive?: boolean }).sensitive === true,
);

/** Settings a production deployment must set: they have no production default. */
export const REQUIRED_IN_PRODUCTION = Object.keys(DEVELOPMENT_URLS) as (keyof Settings)[];

/**
 * Reads and validates settings from an environment. Throws one SettingsError naming every bad
 * variable; it never reads process.argv (functions-framework keeps --target there).
 */
export function loadSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  // convict keeps formats in a registry of its own; adding the same ones again is harmless.
  for (const format of FORMATS) convict.addFormat(format);
  const config = convict(schema, { env, args: [] });
  const problems: string[] = [];
  try {
    config.validate({ allowed: 'strict' });
  } catch (error) {
    // convict ends a line with `value was "…"`: no value is printed unredacted.
    const lines = (error as Error).message.split('\n').filter((line) => line !== '');
    problems.push(
      ...lines.map((line) =>
        line.replace(/value was (.*)$/, (_all, value: string) => `value was ${redactValue(value)}`),
      ),
    );
  }
  const settings = config.getProperties() as Settings;

  for (const name of REQUIRED_IN_PRODUCTION) {
    if (settings[name] !== '') continue;
    if (settings.NODE_ENV === 'production') {
      problems.push(`${name}: must be set when NODE_ENV is production`);
    } else {
      Object.assign(settings, { [name]: DEVELOPMENT_URLS[name as keyof typeof DEVELOPMENT_URLS] });
    }
  }
  problems.push(...crossProblems(settings));

  if (problems.length > 0) throw new SettingsError(problems);
  return Object.freeze(settings);
}

let cached: Settings | undefined;

/** The process's settings, read from process.env once. */
export function getSettings(): Settings {
  cached ??= loadSettings(process.env);
  return cached;
}
