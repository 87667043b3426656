import fs from 'node:fs';
import path from 'node:path';
import {
  DEVELOPMENT_URLS,
  SETTING_NAMES,
  SettingsError,
  getSettings,
  loadSettings,
} from '../../lib/config/settings';
import { REPO_ROOT } from '../../testing/process';

function problemsOf(env: NodeJS.ProcessEnv): string[] {
  try {
    loadSettings(env);
  } catch (error) {
    expect(error).toBeInstanceOf(SettingsError);
    return [...(error as SettingsError).problems];
  }
  throw new Error('expected a SettingsError');
}

describe('loadSettings', () => {
  it('has the documented defaults outside production', () => {
    expect(loadSettings({})).toEqual({
      PORT: 8080,
      LISTEN_HOST: '',
      MAX_BODY_BYTES: 16_384,
      KEEP_ALIVE_TIMEOUT_MS: 95_000,
      SHUTDOWN_TIMEOUT_MS: 20_000,
      NODE_ENV: 'development',
      VAULT_ADDR: DEVELOPMENT_URLS.VAULT_ADDR,
      ORY_URL: DEVELOPMENT_URLS.ORY_URL,
      ORY_HEALTH_PATH: '/health/ready',
      METRICS_PATH: '/metrics',
      READINESS_TIMEOUT_MS: 800,
      READINESS_CACHE_TTL_MS: 1000,
      REQUEST_ID_HEADER: 'X-Request-ID',
      ACCESS_LOG_PROBES: false,
      LOG_LEVEL: 'info',
      VAULT_TOKEN: '',
      VAULT_TOKEN_FILE: '',
      VAULT_TOKEN_FILE_REREAD_MS: 300_000,
      VAULT_REQUEST_TIMEOUT_MS: 1000,
      VAULT_K8S_ROLE: '',
      VAULT_K8S_MOUNT: 'kubernetes',
      VAULT_K8S_JWT_FILE: '/var/run/secrets/kubernetes.io/serviceaccount/token',
      VAULT_KV_MOUNT: 'secret',
      SLACK_SIGNING_SECRET: '',
      SLACK_SIGNING_SECRET_VAULT_PATH: '',
      SLACK_SIGNING_SECRET_VAULT_KEY: 'signing_secret',
      SLACK_SECRET_TTL_MS: 300_000,
      SLACK_SECRET_STALE_MS: 3_600_000,
      SLACK_BOT_TOKEN: '',
      SLACK_BOT_TOKEN_VAULT_PATH: '',
      SLACK_BOT_TOKEN_VAULT_KEY: 'bot_token',
      SLACK_API_URL: 'https://slack.com/api/',
      SLACK_RESPONSE_URL_PREFIX: 'https://hooks.slack.com/',
      SLACK_API_TIMEOUT_MS: 5000,
      SLACK_MAX_PENDING_WORK: 100,
      VAULT_K8S_TOKEN_TTL_MS: 300_000,
      SLACK_MAX_BODY_BYTES: 65_536,
      K_SINK: '',
      K_CE_OVERRIDES: '',
      SLACK_PUBLISH_TIMEOUT_MS: 1500,
      PGHOST: 'localhost',
      PGPORT: 5432,
      PGDATABASE: 'coffeebuddy',
      PGUSER: 'coffeebuddy',
      PGPASSWORD: '',
      PGSSLMODE: 'verify-full',
      PGSSLROOTCERT: '',
      PG_PASSWORD_VAULT_PATH: '',
      PG_PASSWORD_VAULT_KEY: 'password',
      PG_PASSWORD_TTL_MS: 300_000,
      PG_PASSWORD_STALE_MS: 3_600_000,
      PG_POOL_MAX: 10,
      PG_CONNECT_TIMEOUT_MS: 2000,
      PG_STATEMENT_TIMEOUT_MS: 5000,
      FUNCTION_TARGET: 'coffeebuddy',
      SLACK_HANDLER_TIMEOUT_MS: 10_000,
      SLACK_WORK_LEASE_MS: 30_000,
      SLACK_WORK_RETENTION_MS: 86_400_000,
      SLACK_DEAD_RETENTION_MS: 604_800_000,
      SLACK_DEAD_MAX_ROWS: 10_000,
      EVENT_MAX_IN_FLIGHT: 20,
      EVENTING_OIDC_AUDIENCE: '',
      EVENTING_OIDC_ISSUER: 'https://kubernetes.default.svc.cluster.local',
      EVENTING_OIDC_JWKS_URL: '',
      EVENTING_OIDC_SUBJECTS: '',
      EVENTING_OIDC_TOKEN_FILE: '/var/run/secrets/kubernetes.io/serviceaccount/token',
      EVENTING_OIDC_CA_FILE: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt',
    });
  });

  describe('event delivery authentication (EVENTING_OIDC_*)', () => {
    const production = { NODE_ENV: 'production', VAULT_ADDR: 'https://v', ORY_URL: 'https://o' };

    it.each(['slackWorker', 'slackDeadLetter'])(
      'requires an audience for %s in production, or "none" said explicitly',
      (target) => {
        expect(problemsOf({ ...production, FUNCTION_TARGET: target })).toEqual([
          `EVENTING_OIDC_AUDIENCE: must be set for ${target} in production (the Trigger's subscriber audience), or "none" to take deliveries unauthenticated`,
        ]);
        const none = { ...production, FUNCTION_TARGET: target, EVENTING_OIDC_AUDIENCE: 'none' };
        expect(() => loadSettings(none)).not.toThrow();
        const set = { ...production, FUNCTION_TARGET: target, EVENTING_OIDC_AUDIENCE: 'w.cb' };
        expect(loadSettings(set).EVENTING_OIDC_AUDIENCE).toBe('w.cb');
      },
    );

    it('needs no audience for the ingress, nor outside production', () => {
      expect(() => loadSettings(production)).not.toThrow();
      expect(() => loadSettings({ FUNCTION_TARGET: 'slackWorker' })).not.toThrow();
    });

    it('reads the issuer over https only in production', () => {
      const env = {
        ...production,
        FUNCTION_TARGET: 'slackWorker',
        EVENTING_OIDC_AUDIENCE: 'w',
        EVENTING_OIDC_ISSUER: 'http://127.0.0.1:6443',
        EVENTING_OIDC_JWKS_URL: 'http://127.0.0.1:6443/openid/v1/jwks',
      };
      expect(problemsOf(env)).toEqual([
        'EVENTING_OIDC_ISSUER: must be https:// in production',
        'EVENTING_OIDC_JWKS_URL: must be https:// in production',
      ]);
      expect(loadSettings({ ...env, NODE_ENV: 'development' }).EVENTING_OIDC_ISSUER).toBe(
        'http://127.0.0.1:6443',
      );
    });

    it.each([
      ['EVENTING_OIDC_AUDIENCE', 'a b', 'without spaces or commas'],
      ['EVENTING_OIDC_AUDIENCE', 'a,b', 'without spaces or commas'],
      ['EVENTING_OIDC_AUDIENCE', 'x'.repeat(257), 'at most 256'],
      ['EVENTING_OIDC_SUBJECTS', 'a,,b', 'none empty'],
      ['EVENTING_OIDC_SUBJECTS', 'a, b', 'without spaces'],
      [
        'EVENTING_OIDC_ISSUER',
        'kubernetes.default.svc',
        'must be an absolute http:// or https:// URL',
      ],
      ['EVENTING_OIDC_JWKS_URL', 'https://k/jwks?x=1', 'must not contain a query or fragment'],
      ['EVENTING_OIDC_TOKEN_FILE', 'token', 'must be an absolute file path'],
      ['EVENTING_OIDC_CA_FILE', 'ca.crt', 'must be an absolute file path'],
    ])('refuses %s=%j', (name, value, message) => {
      const problems = problemsOf({ [name]: value });
      expect(problems).toHaveLength(1);
      expect(problems[0]).toContain(name);
      expect(problems[0]).toContain(message);
    });

    it('compares the issuer exactly: no trailing slash', () => {
      expect(problemsOf({ EVENTING_OIDC_ISSUER: 'https://kubernetes.default.svc/' })).toEqual([
        'EVENTING_OIDC_ISSUER: must not end with "/": it is compared with the tokens\' iss exactly',
      ]);
    });

    it('takes subjects as a comma list', () => {
      const subjects = 'system:serviceaccount:a:b,system:serviceaccount:c:d';
      expect(loadSettings({ EVENTING_OIDC_SUBJECTS: subjects }).EVENTING_OIDC_SUBJECTS).toBe(
        subjects,
      );
    });
  });

  it('reads every variable', () => {
    const env = {
      PORT: '9000',
      LISTEN_HOST: '127.0.0.1',
      MAX_BODY_BYTES: '0',
      KEEP_ALIVE_TIMEOUT_MS: '120000',
      SHUTDOWN_TIMEOUT_MS: '25000',
      NODE_ENV: 'production',
      VAULT_ADDR: 'https://vault.example:8200',
      ORY_URL: 'http://kratos-admin.ory.svc:4434',
      ORY_HEALTH_PATH: '/health/alive',
      METRICS_PATH: '/internal/metrics',
      READINESS_TIMEOUT_MS: '250',
      READINESS_CACHE_TTL_MS: '0',
      REQUEST_ID_HEADER: 'X-Correlation-ID',
      ACCESS_LOG_PROBES: 'true',
      LOG_LEVEL: 'debug',
      VAULT_TOKEN: '',
      VAULT_TOKEN_FILE: '',
      VAULT_TOKEN_FILE_REREAD_MS: '120000',
      VAULT_REQUEST_TIMEOUT_MS: '1500',
      VAULT_K8S_ROLE: 'coffeebuddy',
      VAULT_K8S_MOUNT: 'k8s/prod',
      VAULT_K8S_JWT_FILE: '/var/run/secrets/tokens/vault',
      VAULT_KV_MOUNT: 'kv',
      SLACK_SIGNING_SECRET: '',
      SLACK_SIGNING_SECRET_VAULT_PATH: 'coffeebuddy/slack',
      SLACK_SIGNING_SECRET_VAULT_KEY: 'signing-secret',
      SLACK_SECRET_TTL_MS: '60000',
      SLACK_SECRET_STALE_MS: '0',
      SLACK_BOT_TOKEN: '',
      SLACK_BOT_TOKEN_VAULT_PATH: 'coffeebuddy/slack',
      SLACK_BOT_TOKEN_VAULT_KEY: 'bot-token',
      SLACK_API_URL: 'https://egress.example/slack/api/',
      SLACK_RESPONSE_URL_PREFIX: 'https://hooks.slack.com/',
      SLACK_API_TIMEOUT_MS: '3000',
      SLACK_MAX_PENDING_WORK: '5',
      VAULT_K8S_TOKEN_TTL_MS: '90000',
      SLACK_MAX_BODY_BYTES: '32768',
      K_SINK:
        'http://kafka-broker-ingress.knative-eventing.svc.cluster.local/coffeebuddy/coffeebuddy',
      K_CE_OVERRIDES: '{"extensions":{"team":"coffee"}}',
      SLACK_PUBLISH_TIMEOUT_MS: '800',
      PGHOST: 'pg-rw.db.svc',
      PGPORT: '6432',
      PGDATABASE: 'coffeebuddy_prod',
      PGUSER: 'coffeebuddy_app',
      PGPASSWORD: '',
      PGSSLMODE: 'verify-ca',
      PGSSLROOTCERT: '/etc/pg/ca.crt',
      PG_PASSWORD_VAULT_PATH: 'coffeebuddy/postgres',
      PG_PASSWORD_VAULT_KEY: 'pw',
      PG_PASSWORD_TTL_MS: '60000',
      PG_PASSWORD_STALE_MS: '0',
      PG_POOL_MAX: '4',
      PG_CONNECT_TIMEOUT_MS: '1500',
      PG_STATEMENT_TIMEOUT_MS: '3000',
      FUNCTION_TARGET: 'slackWorker',
      SLACK_HANDLER_TIMEOUT_MS: '5000',
      SLACK_WORK_LEASE_MS: '6000',
      SLACK_WORK_RETENTION_MS: '7200000',
      SLACK_DEAD_RETENTION_MS: '3600000',
      SLACK_DEAD_MAX_ROWS: '50',
      EVENT_MAX_IN_FLIGHT: '10',
      EVENTING_OIDC_AUDIENCE: 'coffeebuddy-worker.coffeebuddy',
      EVENTING_OIDC_ISSUER: 'https://kubernetes.default.svc',
      EVENTING_OIDC_JWKS_URL: 'https://kubernetes.default.svc/openid/v1/jwks',
      EVENTING_OIDC_SUBJECTS: 'system:serviceaccount:a:b',
      EVENTING_OIDC_TOKEN_FILE: '/t',
      EVENTING_OIDC_CA_FILE: '',
    };
    const settings = loadSettings(env);
    expect(settings).toEqual({
      ...env,
      PORT: 9000,
      MAX_BODY_BYTES: 0,
      KEEP_ALIVE_TIMEOUT_MS: 120_000,
      SHUTDOWN_TIMEOUT_MS: 25_000,
      READINESS_TIMEOUT_MS: 250,
      READINESS_CACHE_TTL_MS: 0,
      ACCESS_LOG_PROBES: true,
      VAULT_TOKEN_FILE_REREAD_MS: 120_000,
      VAULT_REQUEST_TIMEOUT_MS: 1500,
      SLACK_SECRET_TTL_MS: 60_000,
      SLACK_SECRET_STALE_MS: 0,
      SLACK_API_TIMEOUT_MS: 3000,
      SLACK_MAX_PENDING_WORK: 5,
      VAULT_K8S_TOKEN_TTL_MS: 90_000,
      SLACK_MAX_BODY_BYTES: 32_768,
      SLACK_PUBLISH_TIMEOUT_MS: 800,
      PGPORT: 6432,
      PG_PASSWORD_TTL_MS: 60_000,
      PG_PASSWORD_STALE_MS: 0,
      PG_POOL_MAX: 4,
      PG_CONNECT_TIMEOUT_MS: 1500,
      PG_STATEMENT_TIMEOUT_MS: 3000,
      SLACK_HANDLER_TIMEOUT_MS: 5000,
      SLACK_WORK_LEASE_MS: 6000,
      SLACK_WORK_RETENTION_MS: 7_200_000,
      SLACK_DEAD_RETENTION_MS: 3_600_000,
      SLACK_DEAD_MAX_ROWS: 50,
      EVENT_MAX_IN_FLIGHT: 10,
      EVENTING_OIDC_AUDIENCE: 'coffeebuddy-worker.coffeebuddy',
      EVENTING_OIDC_ISSUER: 'https://kubernetes.default.svc',
      EVENTING_OIDC_JWKS_URL: 'https://kubernetes.default.svc/openid/v1/jwks',
      EVENTING_OIDC_SUBJECTS: 'system:serviceaccount:a:b',
      EVENTING_OIDC_TOKEN_FILE: '/t',
      EVENTING_OIDC_CA_FILE: '',
    });
    expect(Object.keys(settings).sort()).toEqual([...SETTING_NAMES].sort());
    expect(Object.isFrozen(settings)).toBe(true);
  });

  it('takes the PostgreSQL password from one place: PGPASSWORD outside production, else Vault', () => {
    const vault = { VAULT_TOKEN: 't' };
    expect(
      problemsOf({
        NODE_ENV: 'production',
        VAULT_ADDR: 'http://v',
        ORY_URL: 'http://o',
        PGPASSWORD: 'x',
      }),
    ).toEqual(['PGPASSWORD: not allowed in production; set PG_PASSWORD_VAULT_PATH']);
    expect(problemsOf({ PGPASSWORD: 'x', PG_PASSWORD_VAULT_PATH: 'cb/pg', ...vault })).toEqual([
      'PGPASSWORD, PG_PASSWORD_VAULT_PATH: set only one',
    ]);
    expect(problemsOf({ PG_PASSWORD_VAULT_PATH: 'cb/pg' })).toEqual([
      'PG_PASSWORD_VAULT_PATH: needs one of VAULT_TOKEN, VAULT_TOKEN_FILE, VAULT_K8S_ROLE',
    ]);
    expect(() => loadSettings({ PG_PASSWORD_VAULT_PATH: 'cb/pg', ...vault })).not.toThrow();
    expect(() => loadSettings({ PGPASSWORD: 'x' })).not.toThrow();
  });

  it('takes the bot token from one place, and Slack over https in production', () => {
    const production = { NODE_ENV: 'production', VAULT_ADDR: 'http://v', ORY_URL: 'http://o' };
    expect(problemsOf({ ...production, SLACK_BOT_TOKEN: 'xoxb-x' })).toEqual([
      'SLACK_BOT_TOKEN: not allowed in production; set SLACK_BOT_TOKEN_VAULT_PATH',
    ]);
    expect(
      problemsOf({
        SLACK_BOT_TOKEN: 'xoxb-x',
        SLACK_BOT_TOKEN_VAULT_PATH: 'cb/slack',
        VAULT_TOKEN: 't',
      }),
    ).toEqual(['SLACK_BOT_TOKEN, SLACK_BOT_TOKEN_VAULT_PATH: set only one']);
    expect(problemsOf({ SLACK_BOT_TOKEN_VAULT_PATH: 'cb/slack' })).toEqual([
      'SLACK_BOT_TOKEN_VAULT_PATH: needs one of VAULT_TOKEN, VAULT_TOKEN_FILE, VAULT_K8S_ROLE',
    ]);
    expect(problemsOf({ ...production, SLACK_API_URL: 'http://proxy.local/api/' })).toEqual([
      'SLACK_API_URL: must be an https:// URL in production (the bot token goes with every call)',
    ]);
    expect(problemsOf({ SLACK_API_URL: '' })).toEqual(['SLACK_API_URL: must be set']);
    expect(problemsOf({ SLACK_API_URL: 'https://user:pw@proxy/api/' })[0]).toMatch(
      /^SLACK_API_URL: must not contain credentials/,
    );
    expect(
      problemsOf({ ...production, SLACK_RESPONSE_URL_PREFIX: 'https://hooks.slack.com.evil/' }),
    ).toEqual(['SLACK_RESPONSE_URL_PREFIX: must be https://hooks.slack.com/ in production']);
    expect(problemsOf({ SLACK_RESPONSE_URL_PREFIX: 'http://127.0.0.1:9' })).toEqual([
      'SLACK_RESPONSE_URL_PREFIX: must end with / (a host is never a prefix)',
    ]);
    expect(loadSettings({ SLACK_BOT_TOKEN: 'xoxb-local' }).SLACK_BOT_TOKEN).toBe('xoxb-local');
    expect(loadSettings({ SLACK_API_URL: 'http://127.0.0.1:9/api/' }).SLACK_API_URL).toBe(
      'http://127.0.0.1:9/api/',
    );
  });

  it('keeps a worker’s lease above its handler timeout, and names only functions it has', () => {
    expect(problemsOf({ SLACK_HANDLER_TIMEOUT_MS: '10000', SLACK_WORK_LEASE_MS: '10999' })).toEqual(
      [
        'SLACK_WORK_LEASE_MS: must be at least SLACK_HANDLER_TIMEOUT_MS + 1000, so that a live worker keeps its claim',
      ],
    );
    expect(() =>
      loadSettings({ SLACK_HANDLER_TIMEOUT_MS: '10000', SLACK_WORK_LEASE_MS: '11000' }),
    ).not.toThrow();
    expect(() => loadSettings({ FUNCTION_TARGET: 'slackworker' })).toThrow(/FUNCTION_TARGET/);
  });

  it('takes PGSSLROOTCERT only where the certificate is verified', () => {
    expect(problemsOf({ PGSSLMODE: 'require', PGSSLROOTCERT: '/ca.crt' })).toEqual([
      'PGSSLROOTCERT: used only with PGSSLMODE verify-ca or verify-full',
    ]);
    expect(() =>
      loadSettings({ PGSSLMODE: 'verify-full', PGSSLROOTCERT: '/ca.crt' }),
    ).not.toThrow();
  });

  it('requires VAULT_ADDR and ORY_URL in production', () => {
    expect(problemsOf({ NODE_ENV: 'production' })).toEqual([
      'VAULT_ADDR: must be set when NODE_ENV is production',
      'ORY_URL: must be set when NODE_ENV is production',
    ]);
  });

  it.each([
    ['ACCESS_LOG_PROBES', 'yes', 'must be true or false'],
    ['ACCESS_LOG_PROBES', '0', 'must be true or false'],
    ['REQUEST_ID_HEADER', 'X Request', 'must be an HTTP header name'],
    ['LISTEN_HOST', 'a b', 'must be an IP address or host name'],
    ['KEEP_ALIVE_TIMEOUT_MS', '500', 'must be between 1000 and 600000'],
    ['MAX_BODY_BYTES', '2000000', 'must be between 0 and 1048576'],
    ['PORT', '9090abc', 'must be a whole number of plain digits'],
    ['PORT', '0', 'must be between 1 and 65535'],
    ['PGHOST', 'db host', 'must be a host name, an IP address or a socket directory'],
    ['PGUSER', 'a"b', 'must be 1–63 letters, digits'],
    ['PGDATABASE', '', 'must be 1–63 letters, digits'],
    ['PGSSLMODE', 'prefer', 'must be one of the possible values'],
    ['PG_POOL_MAX', '0', 'must be between 1 and 100'],
    ['PG_STATEMENT_TIMEOUT_MS', '0', 'must be between 1 and 60000'],
    ['PORT', '70000', 'must be between 1 and 65535'],
    ['PORT', '80.5', 'must be a whole number of plain digits'],
    ['NODE_ENV', 'staging', 'must be one of the possible values'],
    ['VAULT_ADDR', 'vault:8200', 'must be an absolute http:// or https:// URL'],
    ['VAULT_ADDR', 'not a url', 'must be an absolute http:// or https:// URL'],
    ['VAULT_ADDR', 'ftp://vault', 'must be an absolute http:// or https:// URL'],
    ['ORY_URL', 'http://ory/?x=1', 'must not contain a query or fragment'],
    ['ORY_HEALTH_PATH', 'health/ready', 'must be a path starting with "/"'],
    ['ORY_HEALTH_PATH', '/health/../ready', 'dot segments'],
    ['METRICS_PATH', 'metrics', 'must be a path starting with "/"'],
    ['METRICS_PATH', '/health/metrics', 'must not be /health or under /health/'],
    ['METRICS_PATH', '/health', 'must not be /health or under /health/'],
    ['READINESS_TIMEOUT_MS', '-1', 'must be a whole number of plain digits'],
    ['READINESS_TIMEOUT_MS', 'soon', 'must be a whole number of plain digits'],
    ['READINESS_TIMEOUT_MS', '0', 'must be between 1 and 60000'],
    ['READINESS_CACHE_TTL_MS', '1e3', 'must be a whole number of plain digits'],
    ['LOG_LEVEL', 'verbose', 'must be one of the possible values'],
    ['VAULT_TOKEN_FILE', 'token.txt', 'must be an absolute file path'],
    ['VAULT_K8S_JWT_FILE', 'jwt', 'must be an absolute file path'],
    ['VAULT_K8S_ROLE', 'has space', 'must be a Vault path'],
    ['VAULT_KV_MOUNT', '/secret', 'must be a Vault path'],
    [
      'SLACK_SIGNING_SECRET_VAULT_PATH',
      'coffeebuddy/slack',
      'needs one of VAULT_TOKEN, VAULT_TOKEN_FILE, VAULT_K8S_ROLE',
    ],
    ['SLACK_SECRET_TTL_MS', '10', 'must be between 1000 and 86400000'],
    ['SLACK_MAX_BODY_BYTES', '64kb', 'must be a whole number of plain digits'],
    ['SLACK_MAX_PENDING_WORK', '0', 'must be between 1 and 10000'],
    ['EVENT_MAX_IN_FLIGHT', '0', 'must be between 1 and 1000'],
    ['EVENT_MAX_IN_FLIGHT', '32k', 'must be a whole number of plain digits'],
    ['K_SINK', 'broker:8080/ns/b', 'must be an absolute http:// or https:// URL'],
    ['SLACK_PUBLISH_TIMEOUT_MS', '3000', 'must be between 1 and 2500'],
    ['SLACK_PUBLISH_TIMEOUT_MS', '0', 'must be between 1 and 2500'],
    ['K_CE_OVERRIDES', '{extensions:{}}', 'must be JSON like {"extensions":{"name":"value"}}'],
    ['K_CE_OVERRIDES', '{"extensions":{}, "x":1}', 'must be an object with "extensions" only'],
    ['K_CE_OVERRIDES', '["extensions"]', 'must be an object with "extensions" only'],
    ['K_CE_OVERRIDES', '{"extensions":"a=b"}', '"extensions" must be an object'],
    ['K_CE_OVERRIDES', '{"extensions":{"Team":"a"}}', 'name "Team" must be 1–20 lower-case'],
    ['K_CE_OVERRIDES', '{"extensions":{"a_b":"a"}}', 'name "a_b" must be 1–20 lower-case'],
    ['K_CE_OVERRIDES', `{"extensions":{"${'a'.repeat(21)}":"a"}}`, 'must be 1–20 lower-case'],
    ['K_CE_OVERRIDES', '{"extensions":{"type":"a"}}', '"type" is a CloudEvents attribute'],
    ['K_CE_OVERRIDES', '{"extensions":{"source":"a"}}', '"source" is a CloudEvents attribute'],
    ['K_CE_OVERRIDES', '{"extensions":{"n":1}}', 'extension "n" must have a value of printable'],
    ['K_CE_OVERRIDES', '{"extensions":{"n":"a\\nb"}}', 'extension "n" must have a value of'],
  ])('rejects %s=%s', (name, value, reason) => {
    const problems = problemsOf({ [name]: value });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(new RegExp(`^${name}: `));
    expect(problems[0]).toContain(reason);
  });

  it('allows one Vault authentication method and one source of the signing secret', () => {
    expect(problemsOf({ VAULT_TOKEN: 't', VAULT_K8S_ROLE: 'r' })).toEqual([
      'VAULT_TOKEN, VAULT_K8S_ROLE: set only one Vault authentication method',
    ]);
    expect(
      problemsOf({
        SLACK_SIGNING_SECRET: 's',
        SLACK_SIGNING_SECRET_VAULT_PATH: 'p',
        VAULT_TOKEN: 't',
      }),
    ).toEqual(['SLACK_SIGNING_SECRET, SLACK_SIGNING_SECRET_VAULT_PATH: set only one']);
    expect(
      problemsOf({
        NODE_ENV: 'production',
        VAULT_ADDR: 'http://v',
        ORY_URL: 'http://o',
        SLACK_SIGNING_SECRET: 's',
      }),
    ).toEqual([
      'SLACK_SIGNING_SECRET: not allowed in production; set SLACK_SIGNING_SECRET_VAULT_PATH',
    ]);
    expect(loadSettings({ SLACK_SIGNING_SECRET: 'local-only' }).SLACK_SIGNING_SECRET).toBe(
      'local-only',
    );
  });

  it('names every bad variable in one error', () => {
    const problems = problemsOf({
      PORT: 'http',
      NODE_ENV: 'production',
      ORY_URL: 'nope',
      LOG_LEVEL: 'loud',
      READINESS_CACHE_TTL_MS: '-5',
    });
    expect(problems.map((p) => p.split(':')[0]).sort()).toEqual(
      ['LOG_LEVEL', 'ORY_URL', 'PORT', 'READINESS_CACHE_TTL_MS', 'VAULT_ADDR'].sort(),
    );
  });

  it('bounds K_CE_OVERRIDES in all: its headers fit in 8 KiB, whatever the count', () => {
    const overrides = (values: Record<string, string>) => JSON.stringify({ extensions: values });
    const headersOf = (values: Record<string, string>) =>
      Object.entries(values).reduce((sum, [n, v]) => sum + `ce-${n}: ${v}\r\n`.length, 0);
    // The issue's case: 20 values of 1 KiB each, every one allowed alone.
    const twenty = Object.fromEntries(
      Array.from({ length: 20 }, (_, i) => [`ext${i}`, 'v'.repeat(1024)]),
    );
    const problems = problemsOf({ K_CE_OVERRIDES: overrides(twenty) });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain('must fit in 8192 bytes of headers in all');
    expect(problems[0]).toContain(`these take ${headersOf(twenty)}`);
    expect(problems[0]).not.toContain('vvvv');
    // Exactly 8192 bytes is allowed, one more is not.
    const exact: Record<string, string> = {};
    for (let i = 0; i < 7; i += 1) exact[`e${i}`] = 'x'.repeat(1024);
    const left = 8192 - headersOf(exact) - 'ce-last: \r\n'.length;
    exact.last = 'y'.repeat(left);
    expect(headersOf(exact)).toBe(8192);
    expect(loadSettings({ K_CE_OVERRIDES: overrides(exact) }).K_CE_OVERRIDES).toBe(
      overrides(exact),
    );
    expect(problemsOf({ K_CE_OVERRIDES: overrides({ ...exact, last: `${exact.last}y` }) })).toEqual(
      [expect.stringContaining('these take 8193')],
    );
  });

  it('never echoes K_CE_OVERRIDES, whose values may be anything', () => {
    const problems = problemsOf({ K_CE_OVERRIDES: '{"extensions":{"token":7,"k":"PW-canary"}}' });
    expect(problems).toEqual([
      'K_CE_OVERRIDES: extension "token" must have a value of printable ASCII text, at most 1024 characters',
    ]);
    expect(problemsOf({ K_CE_OVERRIDES: '{"PW-canary' }).join('\n')).not.toContain('PW-canary');
  });

  it('never repeats credentials found in a URL', () => {
    const error = (() => {
      try {
        loadSettings({ VAULT_ADDR: 'https://admin:hunter2-secret@vault.example' });
      } catch (e) {
        return e as Error;
      }
      throw new Error('expected a SettingsError');
    })();
    expect(error.message).toContain('VAULT_ADDR: must not contain credentials');
    expect(error.message).not.toContain('hunter2-secret');
    expect(error.message).not.toContain('admin');
  });

  it.each([
    ['VAULT_ADDR', 'http://admin:PW-canary@vault.example:99999'],
    ['VAULT_ADDR', 'http://u:PW-canary@[::1'],
    ['ORY_URL', 'http://ory.example/?token=PW-canary'],
    ['ORY_URL', 'not a url#PW-canary'],
    ['ORY_HEALTH_PATH', '/health?token=PW-canary'],
    ['METRICS_PATH', 'metrics?token=PW-canary'],
  ])('redacts user-info and queries in %s=%s, parseable or not', (name, value) => {
    const error = (() => {
      try {
        loadSettings({ [name]: value });
      } catch (e) {
        return e as Error;
      }
      throw new Error('expected a SettingsError');
    })();
    expect(error.message).toContain(`${name}: `);
    expect(error.message).not.toContain('PW-canary');
  });

  it('ignores command-line arguments such as --port', () => {
    const argv = process.argv;
    process.argv = [...argv, '--PORT', '1234', '--port=1234'];
    try {
      expect(loadSettings({}).PORT).toBe(8080);
    } finally {
      process.argv = argv;
    }
  });
});

describe('getSettings', () => {
  it('reads process.env once and keeps the result', () => {
    const first = getSettings();
    expect(getSettings()).toBe(first);
  });
});

describe("the README's settings table", () => {
  const readme = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
  const rows = new Map(
    [...readme.matchAll(/^\| `([A-Z0-9_]+)` +\|[^|]*\| *(.*?) *\|$/gm)].map((m) => [m[1]!, m[2]!]),
  );

  it('lists every setting the schema has, and no other', () => {
    expect([...rows.keys()].sort()).toEqual([...SETTING_NAMES].sort());
  });

  it('gives each numeric default as the schema has it', () => {
    const defaults = loadSettings({});
    for (const name of SETTING_NAMES) {
      const value = defaults[name];
      if (typeof value === 'number') expect([name, rows.get(name)]).toEqual([name, `\`${value}\``]);
    }
  });
});
