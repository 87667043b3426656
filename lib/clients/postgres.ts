import fs from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import type { Pool, PoolClient, QueryResult, QueryResultRow } from 'pg';
import type { Registry } from 'prom-client';
import { CachedSecret } from '../cached-secret';
import type { PgSslMode, Settings } from '../config/settings';
import { UpstreamError, reasonOf } from '../errors';
import { componentHealth, type ComponentHealth, type HealthCheckClient } from '../health';
import type { Logger } from '../logger';
import type { Redactor } from '../redactor';
import { checkOperation, createPostgresMetrics, type PostgresMetrics } from './postgres-metrics';
import { vaultSecretValue, type VaultClient } from './vault';

/** Runs statements: the pool, or one connection held by withConnection. */
export interface Queryable {
  /**
   * Runs one statement. `operation` names it on /metrics and in errors: a fixed name chosen in
   * code (`[a-z][a-z0-9_]*`), never SQL text.
   */
  query<R extends QueryResultRow = QueryResultRow>(
    operation: string,
    text: string,
    values?: unknown[],
  ): Promise<QueryResult<R>>;
}

/** Answers readiness like the Vault and Ory clients; its close() is asynchronous (the pool ends). */
export interface PostgresClient extends Pick<HealthCheckClient, 'healthCheck'>, Queryable {
  /** Runs fn on one connection held for it, so that session state (advisory locks) stays. */
  withConnection<T>(fn: (connection: Queryable) => Promise<T>): Promise<T>;
  /**
   * Ends the pool once every connection in use has been returned; the client is not used
   * afterwards. The drain calls it after in-flight requests and work have finished.
   */
  close(): Promise<void>;
}

/** What a PostgreSQL client is built with besides settings; the app passes its own. */
export interface PostgresDependencies {
  vault: VaultClient;
  logger: Logger;
  /** Where the pool gauges and query histogram are registered. */
  registry: Registry;
  /** Told the password, so that no log line carries it. */
  redactor?: Redactor;
}
export type PostgresClientFactory = (
  settings: Settings,
  deps: PostgresDependencies,
) => PostgresClient;

/**
 * A failed database request. The message is a reason a person can act on and holds no value or
 * password; `serverMessage` is PostgreSQL's own text, which may quote values, for operators' tools
 * (the migration runner) only.
 */
export class PostgresError extends UpstreamError {
  constructor(
    reason: string,
    readonly sqlState?: string,
    readonly serverMessage?: string,
  ) {
    super(reason);
    this.name = 'PostgresError';
  }
}

/** SQLSTATEs the client acts on (PostgreSQL's errcodes). */
const PASSWORD_REJECTED = '28P01';
const QUERY_CANCELED = '57014';
const SHUTTING_DOWN = new Set(['57P01', '57P02', '57P03']);

export interface PgPostgresClientOptions {
  host: string;
  port: number;
  database: string;
  user: string;
  /** Where the password comes from; none when the server asks for none. */
  password?: CachedSecret;
  /** node:tls options, or false for no TLS. */
  ssl: false | ConnectionOptions;
  poolMax: number;
  /** Longest wait for a connection, new or free. */
  connectTimeoutMs: number;
  /** The server's statement_timeout; 0 for none (the migration Job, bounded by its deadline). */
  statementTimeoutMs: number;
  logger: Logger;
  registry: Registry;
}

interface PgFailure {
  code?: string;
  message?: string;
}

/**
 * PostgreSQL through one node-postgres pool of at most poolMax connections. Every wait is bounded:
 * for a connection by connectTimeoutMs (also when the pool is full), for a statement by the
 * server's statement_timeout and, should the network hang, the client's query timeout after it.
 * When the server refuses the password (28P01) it is read again from its source and the
 * connection retried once, so a rotated password needs no restart.
 */
export class PgPostgresClient implements PostgresClient {
  private readonly pool: Pool;
  private readonly metrics: PostgresMetrics;
  private readonly logger: Logger;
  /** One log line per refused password until a connection succeeds again. */
  private rejectionLogged = false;
  private lastSuccessAt = Number.NEGATIVE_INFINITY;
  private closing: Promise<void> | undefined;

  constructor(private readonly options: PgPostgresClientOptions) {
    // Loaded here rather than at import, so that processes without a database never load pg.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const pg = require('pg') as typeof import('pg');
    const secret = options.password;
    const statementTimeoutMs = options.statementTimeoutMs;
    this.logger = options.logger;
    this.pool = new pg.Pool({
      host: options.host,
      port: options.port,
      database: options.database,
      user: options.user,
      // Always a function: given none, pg would fall back to PGPASSWORD and ~/.pgpass.
      password: () =>
        secret === undefined
          ? ''
          : secret.current().catch((error: unknown) => {
              throw new PostgresError(`cannot read the PostgreSQL password: ${reasonOf(error)}`);
            }),
      ssl: options.ssl,
      max: options.poolMax,
      connectionTimeoutMillis: options.connectTimeoutMs,
      application_name: 'coffeebuddy',
      ...(statementTimeoutMs > 0
        ? {
            statement_timeout: statementTimeoutMs,
            query_timeout: statementTimeoutMs + options.connectTimeoutMs,
          }
        : {}),
    });
    // An idle connection the server closed (restart, failover): pg drops it; without a listener
    // the 'error' event would end the process.
    this.pool.on('error', (error) => {
      this.logger.warn('PostgreSQL closed an idle connection', { reason: this.reason(error) });
    });
    this.pool.on('connect', () => {
      this.rejectionLogged = false;
    });
    const pool = this.pool;
    this.metrics = createPostgresMetrics(options.registry, () => ({
      total: pool.totalCount,
      idle: pool.idleCount,
      waiting: pool.waitingCount,
    }));
  }

  async query<R extends QueryResultRow = QueryResultRow>(
    operation: string,
    text: string,
    values?: unknown[],
  ): Promise<QueryResult<R>> {
    checkOperation(operation);
    return await this.timed(operation, async () => {
      const client = await this.connect();
      return this.run<R>(client, operation, text, values, true);
    });
  }

  async withConnection<T>(fn: (connection: Queryable) => Promise<T>): Promise<T> {
    const client = await this.connect();
    let broken: Error | undefined;
    const ignore = () => undefined; // reported by the next query on this connection
    client.on('error', ignore);
    const connection: Queryable = {
      query: async <R extends QueryResultRow>(
        operation: string,
        text: string,
        values?: unknown[],
      ) => {
        checkOperation(operation);
        return await this.timed(operation, () =>
          this.run<R>(client, operation, text, values, false).catch((error: unknown) => {
            if (error instanceof PostgresError && leavesConnectionBroken(error)) broken = error;
            throw error;
          }),
        );
      },
    };
    try {
      return await fn(connection);
    } finally {
      client.off('error', ignore);
      client.release(broken);
    }
  }

  /**
   * Whether a statement runs now. A full pool that served a query within the last connection
   * timeout counts as up without one: busy is not broken, and the probe must not queue for it.
   */
  async healthCheck(): Promise<ComponentHealth> {
    const started = performance.now();
    const pool = this.pool;
    const busy = pool.idleCount === 0 && pool.totalCount >= this.options.poolMax;
    // Stryker disable next-line EqualityOperator: < against <= on fractional milliseconds
    if (busy && started - this.lastSuccessAt < this.options.connectTimeoutMs) {
      return componentHealth(0);
    }
    let problem: string | undefined;
    try {
      // Stryker disable next-line StringLiteral: an empty statement is a round trip as well (EmptyQueryResponse)
      await this.query('health_check', 'SELECT 1');
    } catch (error) {
      problem = reasonOf(error);
    }
    return componentHealth(performance.now() - started, problem);
  }

  close(): Promise<void> {
    this.closing ??= this.pool.end();
    return this.closing;
  }

  private async timed<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      const result = await fn();
      this.lastSuccessAt = performance.now();
      this.metrics.observeQuery(operation, 'ok', (this.lastSuccessAt - started) / 1000);
      return result;
    } catch (error) {
      this.metrics.observeQuery(operation, 'error', (performance.now() - started) / 1000);
      throw error;
    }
  }

  /** Runs a statement on a held connection; `release` returns it to the pool afterwards. */
  private async run<R extends QueryResultRow>(
    client: PoolClient,
    operation: string,
    text: string,
    values: unknown[] | undefined,
    release: boolean,
  ): Promise<QueryResult<R>> {
    // A connection the server ends mid-statement also emits 'error', maybe before the statement's
    // own error is handled: without a listener while it is held, that would end the process.
    const ignore = () => undefined; // reported by the statement's own error
    if (release) client.on('error', ignore);
    try {
      const result = await client.query<R>(text, values);
      if (release) {
        client.off('error', ignore);
        client.release();
      }
      return result;
    } catch (error) {
      const failure = this.failure(error, operation);
      if (release) {
        client.off('error', ignore);
        client.release(leavesConnectionBroken(failure) ? failure : undefined);
      }
      throw failure;
    }
  }

  /** A connection from the pool; a refused password is read again and tried once more. */
  private async connect(): Promise<PoolClient> {
    try {
      return await this.pool.connect();
    } catch (error) {
      if (sqlStateOf(error) !== PASSWORD_REJECTED || this.options.password === undefined) {
        throw this.failure(error);
      }
      const fresh = await this.options.password.refreshAfterRejection().catch(() => undefined);
      if (fresh === undefined) throw this.failure(error);
      this.logger.info('PostgreSQL refused the password; trying the one read again');
      try {
        return await this.pool.connect();
      } catch (retried) {
        throw this.failure(retried);
      }
    }
  }

  /** Our error for pg's, logging a refused password once; never a value or the password. */
  private failure(error: unknown, operation?: string): PostgresError {
    if (error instanceof PostgresError) return error;
    const { code, message } = (error ?? {}) as PgFailure;
    const sqlState = code !== undefined && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
    const reason = this.reason(error, operation);
    if (sqlState === PASSWORD_REJECTED && !this.rejectionLogged) {
      this.rejectionLogged = true;
      this.logger.warn('PostgreSQL refused the password', {
        user: this.options.user,
        sqlState,
      });
    }
    return new PostgresError(reason, sqlState, sqlState === undefined ? undefined : message);
  }

  private reason(error: unknown, operation?: string): string {
    if (error instanceof UpstreamError) return error.message;
    // Stryker disable next-line StringLiteral: pg fails with Errors, whose message is a string
    const { code, message = '' } = (error ?? {}) as PgFailure;
    const what = operation === undefined ? 'the connection' : `query ${operation}`;
    const { connectTimeoutMs, poolMax, statementTimeoutMs, user } = this.options;
    const where = `${this.options.host}:${this.options.port}`;
    if (code === PASSWORD_REJECTED) return `PostgreSQL refused the password of role "${user}"`;
    if (code === QUERY_CANCELED && message.includes('statement timeout')) {
      return `${what} was cancelled: it ran longer than statement_timeout (${statementTimeoutMs} ms)`;
    }
    if (code !== undefined && SHUTTING_DOWN.has(code)) {
      return `PostgreSQL is shutting down or starting (SQLSTATE ${code})`;
    }
    if (code !== undefined && /^[0-9A-Z]{5}$/.test(code))
      return `${what} failed (SQLSTATE ${code})`;
    // pg-pool's wait for a connection held by others: it queues a request only when all poolMax
    // are open (or one is idle, which it hands over at once), and a new one times out otherwise.
    if (message === 'timeout exceeded when trying to connect') {
      return `no free PostgreSQL connection within ${connectTimeoutMs} ms: all ${poolMax} in use`;
    }
    if (message.includes('connection timeout')) {
      return `no connection to PostgreSQL at ${where} within ${connectTimeoutMs} ms`;
    }
    if (message === 'Query read timeout') return `${what} got no answer in time`;
    if (code !== undefined && /^E[A-Z]+$/.test(code)) {
      return `cannot reach PostgreSQL at ${where} (${code})`;
    }
    if (message.startsWith('Connection terminated')) return 'PostgreSQL closed the connection';
    if (message.includes('does not support SSL')) return `PostgreSQL at ${where} offers no TLS`;
    return `${what} failed`;
  }
}

/**
 * Whether a failed statement leaves its connection unusable: a server error does not, except a
 * shutdown's (the server ends the session); anything else (a timeout, a cut) does.
 */
function leavesConnectionBroken(failure: PostgresError): boolean {
  return failure.sqlState === undefined || SHUTTING_DOWN.has(failure.sqlState);
}

function sqlStateOf(error: unknown): string | undefined {
  return (error as PgFailure | undefined)?.code;
}

/** libpq's sslmode as node:tls options; verify-ca checks the chain but not the host name. */
export function sslOptions(mode: PgSslMode, caFile: string): false | ConnectionOptions {
  if (mode === 'disable') return false;
  if (mode === 'require') return { rejectUnauthorized: false };
  const ca = caFile === '' ? {} : { ca: fs.readFileSync(caFile, 'utf8') };
  if (mode === 'verify-ca') return { ...ca, checkServerIdentity: () => undefined };
  return ca;
}

/** Where the password comes from: PGPASSWORD outside production, else Vault, else nowhere. */
function passwordSource(
  settings: Settings,
  vault: VaultClient,
  redactor: Redactor | undefined,
): CachedSecret | undefined {
  const reuse = {
    ttlMs: settings.PG_PASSWORD_TTL_MS,
    staleMs: settings.PG_PASSWORD_STALE_MS,
    // Stryker disable next-line ConditionalExpression: CachedSecret calls redactor?.add, so undefined is none
    ...(redactor === undefined ? {} : { redactor }),
  };
  if (settings.PGPASSWORD !== '') {
    const password = settings.PGPASSWORD;
    return new CachedSecret({ load: () => Promise.resolve(password), ...reuse });
  }
  const path = settings.PG_PASSWORD_VAULT_PATH;
  if (path === '') return undefined;
  const where = { mount: settings.VAULT_KV_MOUNT, path, key: settings.PG_PASSWORD_VAULT_KEY };
  return new CachedSecret({ load: vaultSecretValue(vault, where), ...reuse });
}

export const buildPostgresClient: PostgresClientFactory = (settings, deps) =>
  new PgPostgresClient({
    host: settings.PGHOST,
    port: settings.PGPORT,
    database: settings.PGDATABASE,
    user: settings.PGUSER,
    password: passwordSource(settings, deps.vault, deps.redactor),
    ssl: sslOptions(settings.PGSSLMODE, settings.PGSSLROOTCERT),
    poolMax: settings.PG_POOL_MAX,
    connectTimeoutMs: settings.PG_CONNECT_TIMEOUT_MS,
    statementTimeoutMs: settings.PG_STATEMENT_TIMEOUT_MS,
    logger: deps.logger,
    registry: deps.registry,
  });
