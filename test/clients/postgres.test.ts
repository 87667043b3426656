import { execFileSync } from 'node:child_process';
import type { EventEmitter } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { Registry } from 'prom-client';
import { buildVaultClient } from '../../lib/clients/vault';
import {
  buildPostgresClient,
  PostgresError,
  type PostgresClient,
} from '../../lib/clients/postgres';
import { loadSettings } from '../../lib/config/settings';
import { createLogger } from '../../lib/logger';
import { ReadinessChecker } from '../../lib/readiness';
import { REDACTED, Redactor } from '../../lib/redactor';
import { freePort } from '../../testing/process';
import {
  APP_DATABASE,
  APP_PASSWORD,
  APP_ROLE,
  itWithPostgres,
  startPostgres,
  type PostgresCluster,
} from '../../testing/postgres';
import { startVaultStandIn, type VaultStandIn } from '../../testing/standins';
import { eventually, promtoolCheckMetrics, findCommand, itWithCommand } from '../../testing/tools';

/** Real PostgreSQL (a throwaway cluster): no mock stands between the client and the server. */
let cluster: PostgresCluster | undefined;
let vault: VaultStandIn;
const opened: PostgresClient[] = [];

beforeAll(async () => {
  vault = await startVaultStandIn();
  try {
    cluster = await startPostgres();
  } catch {
    // itWithPostgres has already said SKIPPED (or failed under CI) when there is no server
  }
}, 60_000);

afterAll(async () => {
  await Promise.all(opened.splice(0).map((c) => c.close()));
  await cluster?.remove();
  await vault.close();
}, 60_000);

function client(env: NodeJS.ProcessEnv = {}) {
  const logs: Record<string, unknown>[] = [];
  const lines: string[] = [];
  const registry = new Registry();
  const settings = loadSettings(cluster!.env({ PGPASSWORD: APP_PASSWORD, ...env }));
  const db = buildPostgresClient(settings, {
    vault: buildVaultClient(settings),
    logger: createLogger('debug', (line) => {
      lines.push(line);
      logs.push(JSON.parse(line) as Record<string, unknown>);
    }),
    registry,
  });
  opened.push(db);
  return { db, logs, lines, registry };
}

async function failureOf(promise: Promise<unknown>): Promise<PostgresError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(PostgresError);
    return error as PostgresError;
  }
  throw new Error('expected a PostgresError');
}

describe('PostgresClient against a real PostgreSQL', () => {
  itWithPostgres(
    'runs queries and reports ok health, with pool gauges and query timings',
    async () => {
      const { db, registry } = client();
      const { rows } = await db.query<{ n: number }>(
        'add_numbers',
        'SELECT $1::int + 1 AS n',
        [41],
      );
      expect(rows).toEqual([{ n: 42 }]);
      const checked = performance.now();
      const health = await db.healthCheck();
      expect(health.status).toBe('ok');
      expect(health.latencyMs).toBeLessThanOrEqual(Math.ceil(performance.now() - checked));
      const napped = performance.now();
      await db.query('nap', 'SELECT pg_sleep(0.2)');
      const napSeconds = (performance.now() - napped) / 1000;
      const text = await registry.metrics();
      const nap = Number(
        text.match(
          /coffeebuddy_db_query_duration_seconds_sum\{operation="nap",outcome="ok"\} (\S+)/,
        )?.[1],
      );
      expect(nap).toBeGreaterThanOrEqual(0.2);
      expect(nap).toBeLessThanOrEqual(napSeconds);
      expect(text).toContain('coffeebuddy_db_pool_connections{state="total"} 1');
      expect(text).toContain('coffeebuddy_db_pool_connections{state="idle"} 1');
      expect(text).toContain('coffeebuddy_db_pool_connections{state="waiting"} 0');
      expect(text).toContain(
        'coffeebuddy_db_query_duration_seconds_count{operation="add_numbers",outcome="ok"} 1',
      );
      expect(text).not.toContain('SELECT');
      if (findCommand('promtool') !== undefined) expect(promtoolCheckMetrics(text).status).toBe(0);
    },
  );

  itWithPostgres('refuses an operation name that is not a bounded label (SQL text)', async () => {
    const { db } = client();
    await expect(db.query('SELECT 1', 'SELECT 1')).rejects.toThrow(/operation/);
  });

  itWithPostgres('cuts a query slower than statement_timeout with a clear error', async () => {
    const { db, registry } = client({ PG_STATEMENT_TIMEOUT_MS: '200', PG_POOL_MAX: '1' });
    const backend = async () => (await db.query('backend', 'SELECT pg_backend_pid() AS pid')).rows;
    const before = await backend();
    // 57014 is a cancel: pg_sleep(5) did not run out. How soon: test/system/deadlines.test.ts.
    const started = performance.now();
    const error = await failureOf(db.query('sleep', 'SELECT pg_sleep(5)'));
    const seconds = (performance.now() - started) / 1000;
    const observed = Number(
      (await registry.metrics()).match(
        /coffeebuddy_db_query_duration_seconds_sum\{operation="sleep",outcome="error"\} (\S+)/,
      )?.[1],
    );
    expect(observed).toBeGreaterThanOrEqual(0.2);
    expect(observed).toBeLessThanOrEqual(seconds);
    expect(error.sqlState).toBe('57014');
    expect(error.message).toBe(
      'query sleep was cancelled: it ran longer than statement_timeout (200 ms)',
    );
    // The connection stays usable after a server-side cancel, and stays in the pool.
    expect(await backend()).toEqual(before);
  });

  itWithPostgres('names the statement timeout by its SQLSTATE, not by words alone', async () => {
    const { db } = client();
    const raised =
      "DO $$ BEGIN RAISE EXCEPTION 'canceling statement due to statement timeout'; END $$";
    const error = await failureOf(db.query('raise', raised));
    expect([error.message, error.sqlState]).toEqual([
      'query raise failed (SQLSTATE P0001)',
      'P0001',
    ]);
  });

  itWithPostgres('returns connections to the pool with no listener left behind', async () => {
    const { db } = client({ PG_POOL_MAX: '1' });
    // The connections pg's pool hands out (its 'acquire' event), read through the client's
    // private pool: a listener left on one per statement is otherwise seen only as Node's
    // MaxListenersExceededWarning on the real process, which jest's process object does not get.
    const handedOut = new Set<EventEmitter>();
    (db as unknown as { pool: EventEmitter }).pool.on('acquire', (connection: EventEmitter) =>
      handedOut.add(connection),
    );
    await db.query('plain', 'SELECT 1');
    await failureOf(db.query('failing', 'SELECT 1/0'));
    await db.withConnection(async (connection) => {
      await connection.query('held', 'SELECT 1');
      await failureOf(connection.query('held_failing', 'SELECT 1/0'));
    });
    // One connection throughout, idle again, with the pool's own 'error' listener alone.
    expect([...handedOut].map((connection) => connection.listenerCount('error'))).toEqual([1]);
  });

  itWithPostgres(
    'waits a bounded time for a connection when the pool is exhausted, then fails',
    async () => {
      // Room for a new connection on a loaded machine (scram-sha-256 costs), held well past it.
      const { db, registry } = client({ PG_POOL_MAX: '2', PG_CONNECT_TIMEOUT_MS: '1000' });
      const holders = [0, 1].map(() => db.query('hold', 'SELECT pg_sleep(3)'));
      await eventually(async () =>
        (await registry.metrics()).includes('coffeebuddy_db_pool_connections{state="total"} 2'),
      );
      // Failing at all, not answering once a holder is done, shows the wait is bounded; how soon
      // it gives up is a deadline, in test/system/deadlines.test.ts.
      const error = await failureOf(db.query('starved', 'SELECT 1'));
      expect(error.message).toBe('no free PostgreSQL connection within 1000 ms: all 2 in use');
      await Promise.all(holders);
      // Readiness does not queue behind a busy pool that is serving.
      expect((await db.healthCheck()).status).toBe('ok');
    },
  );

  itWithPostgres('logs a refused password once, without the password, and says why', async () => {
    const wrong = 'wrong-password-canary-5e1d';
    const { db, logs, lines } = client({ PGPASSWORD: wrong });
    const errors = [
      await failureOf(db.query('first', 'SELECT 1')),
      await failureOf(db.query('second', 'SELECT 1')),
    ];
    const health = await db.healthCheck();
    expect(errors.map((e) => [e.message, e.sqlState])).toEqual([
      [`PostgreSQL refused the password of role "${APP_ROLE}"`, '28P01'],
      [`PostgreSQL refused the password of role "${APP_ROLE}"`, '28P01'],
    ]);
    expect(health).toMatchObject({
      status: 'unavailable',
      error: `PostgreSQL refused the password of role "${APP_ROLE}"`,
    });
    const refusals = logs.filter((l) => l.sqlState === '28P01');
    expect(refusals).toEqual([
      expect.objectContaining({ level: 'warn', msg: 'PostgreSQL refused the password' }),
    ]);
    expect(lines.join('\n')).not.toContain(wrong);
    expect(JSON.stringify(errors.map((e) => [e.message, e.stack]))).not.toContain(wrong);
  });

  itWithPostgres(
    'reads a password rotated in Vault after PostgreSQL refuses the old one',
    async () => {
      const token = 'pg-test-token';
      vault.tokens.set(token, Date.now() + 600_000);
      vault.secrets['coffeebuddy/postgres'] = { password: APP_PASSWORD };
      const { db, logs } = client({
        PGPASSWORD: '',
        VAULT_ADDR: vault.url,
        VAULT_TOKEN: token,
        PG_PASSWORD_VAULT_PATH: 'coffeebuddy/postgres',
      });
      await db.query('before', 'SELECT 1');
      const reads = vault.secretReads;

      const rotated = 'rotated-password-2';
      await cluster!.admin(`ALTER ROLE ${APP_ROLE} PASSWORD '${rotated}'`);
      vault.secrets['coffeebuddy/postgres'] = { password: rotated };
      // Sessions outlive a password change: end them, so the next query needs a new connection.
      await cluster!.admin(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '${APP_ROLE}'`,
      );
      // The pool must have seen its idle connection end (a loaded machine may not have read the
      // server's notice yet): otherwise the next query is sent on it and fails 57P01.
      await eventually(() => logs.some((l) => l.msg === 'PostgreSQL closed an idle connection'));
      expect(logs.find((l) => l.msg === 'PostgreSQL closed an idle connection')).toMatchObject({
        level: 'warn',
        reason: 'PostgreSQL is shutting down or starting (SQLSTATE 57P01)',
      });
      try {
        expect((await db.query('after', 'SELECT 2 AS two')).rows).toEqual([{ two: 2 }]);
        expect((await db.query('again', 'SELECT 3 AS three')).rows).toEqual([{ three: 3 }]);
        expect(vault.secretReads).toBe(reads + 1);
        expect(logs.filter((l) => String(l.msg).includes('trying the one read again'))).toEqual([
          expect.objectContaining({
            level: 'info',
            msg: 'PostgreSQL refused the password; trying the one read again',
          }),
        ]);
        expect(logs.some((l) => l.msg === 'PostgreSQL refused the password')).toBe(false);
      } finally {
        await cluster!.admin(`ALTER ROLE ${APP_ROLE} PASSWORD '${APP_PASSWORD}'`);
      }
    },
  );

  const operatorStops: [string, string, string, string][] = [
    ['cancelled', 'pg_cancel_backend', 'query held failed (SQLSTATE 57014)', '57014'],
    [
      'terminated',
      'pg_terminate_backend',
      'PostgreSQL is shutting down or starting (SQLSTATE 57P01)',
      '57P01',
    ],
  ];
  for (const [what, operatorFunction, reason, sqlState] of operatorStops) {
    itWithPostgres(`names a query an operator ${what}, and runs the next one`, async () => {
      const { db } = client();
      const held = failureOf(db.query('held', 'SELECT pg_sleep(30)'));
      const backend = `FROM pg_stat_activity WHERE usename = '${APP_ROLE}' AND query = 'SELECT pg_sleep(30)'`;
      await eventually(async () => (await cluster!.admin(`SELECT pid ${backend}`)).length === 1);
      await cluster!.admin(`SELECT ${operatorFunction}(pid) ${backend}`);
      const error = await held;
      expect([error.message, error.sqlState]).toEqual([reason, sqlState]);
      expect((await db.query('after', 'SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    });
  }

  itWithPostgres(
    'names its sessions coffeebuddy, with statement_timeout set on each connection',
    async () => {
      const { db } = client({ PG_STATEMENT_TIMEOUT_MS: '1500' });
      const { rows } = await db.query(
        'session',
        "SELECT current_setting('application_name') AS name, current_setting('statement_timeout') AS timeout",
      );
      expect(rows).toEqual([{ name: 'coffeebuddy', timeout: '1500ms' }]);
    },
  );

  itWithPostgres(
    'lets a statement run past the connect timeout when statement_timeout is 0 (the migration Job)',
    async () => {
      const settings = loadSettings(cluster!.env({ PGPASSWORD: APP_PASSWORD }));
      const db = buildPostgresClient(
        { ...settings, PG_STATEMENT_TIMEOUT_MS: 0, PG_CONNECT_TIMEOUT_MS: 1000 },
        {
          vault: buildVaultClient(settings),
          logger: createLogger('error', () => undefined),
          registry: new Registry(),
        },
      );
      opened.push(db);
      // Neither the server nor the client cuts it: no client timeout of connect + 0 ms.
      const { rows } = await db.query(
        'migrate_apply',
        "SELECT current_setting('statement_timeout') AS timeout, pg_sleep(1.5)::text AS slept",
      );
      expect(rows).toEqual([{ timeout: '0', slept: '' }]);
    },
  );

  itWithPostgres(
    'logs a refused password again after a connection has succeeded in between',
    async () => {
      const token = 'pg-relog-token';
      vault.tokens.set(token, Date.now() + 600_000);
      vault.secrets['coffeebuddy/relog'] = { password: 'wrong-1' };
      const { db, logs } = client({
        PGPASSWORD: '',
        VAULT_ADDR: vault.url,
        VAULT_TOKEN: token,
        PG_PASSWORD_VAULT_PATH: 'coffeebuddy/relog',
        PG_PASSWORD_TTL_MS: '1000',
      });
      const refusals = () => logs.filter((l) => l.msg === 'PostgreSQL refused the password');
      await failureOf(db.query('first', 'SELECT 1'));
      await failureOf(db.query('second', 'SELECT 1'));
      expect(refusals()).toHaveLength(1);
      // Past its TTL the password is read again: the right one, and a connection succeeds.
      vault.secrets['coffeebuddy/relog'] = { password: APP_PASSWORD };
      await new Promise((resolve) => setTimeout(resolve, 1100));
      await db.query('right', 'SELECT 1');
      vault.secrets['coffeebuddy/relog'] = { password: 'wrong-2' };
      await cluster!.admin(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '${APP_ROLE}'`,
      );
      await eventually(() => logs.some((l) => l.msg === 'PostgreSQL closed an idle connection'));
      await new Promise((resolve) => setTimeout(resolve, 1100));
      await failureOf(db.query('third', 'SELECT 1'));
      expect(refusals()).toHaveLength(2);
    },
  );

  itWithPostgres(
    'readiness: a full pool that served within the connect timeout is up, one that has not is probed',
    async () => {
      // A connect timeout with room on a loaded machine; the holder outlasts both checks.
      const { db, registry } = client({ PG_POOL_MAX: '1', PG_CONNECT_TIMEOUT_MS: '1000' });
      await db.query('first', 'SELECT 1');
      const probes = async () =>
        (await registry.metrics()).match(
          /coffeebuddy_db_query_duration_seconds_count\{operation="health_check",outcome="ok"\} (\d+)/,
        )?.[1];
      // Full (1 of 1) but idle: probed with a statement of its own.
      expect((await db.healthCheck()).status).toBe('ok');
      expect(await probes()).toBe('1');
      let held = false;
      const holder = db.query('hold', 'SELECT pg_sleep(4)').then(() => {
        held = true;
      });
      await eventually(async () =>
        (await registry.metrics()).includes('coffeebuddy_db_pool_connections{state="idle"} 0'),
      );
      // Busy and served just now: up, without queueing behind the holder.
      expect(await db.healthCheck()).toMatchObject({ status: 'ok', latencyMs: 0 });
      expect(held).toBe(false);
      expect(await probes()).toBe('1');
      // Still busy, but nothing served for longer than the connect timeout: probed, and the probe
      // finds no free connection.
      await new Promise((resolve) => setTimeout(resolve, 1100));
      expect(await db.healthCheck()).toMatchObject({
        status: 'unavailable',
        error: 'no free PostgreSQL connection within 1000 ms: all 1 in use',
      });
      expect(held).toBe(false);
      await holder;
    },
  );

  itWithPostgres('tells the redactor the password it reads', async () => {
    const redactor = new Redactor();
    const settings = loadSettings(cluster!.env({ PGPASSWORD: APP_PASSWORD }));
    const db = buildPostgresClient(settings, {
      vault: buildVaultClient(settings),
      logger: createLogger('error', () => undefined),
      registry: new Registry(),
      redactor,
    });
    opened.push(db);
    await db.query('first', 'SELECT 1');
    expect(redactor.redact(`password ${APP_PASSWORD}`)).toBe(`password ${REDACTED}`);
  });

  itWithPostgres(
    'readiness names postgres within one TTL of a stop, and is ok after a restart',
    async () => {
      const { db } = client({ PG_CONNECT_TIMEOUT_MS: '5000' });
      const ttlMs = 300;
      const checker = new ReadinessChecker({
        components: { postgres: db },
        ttlMs,
        timeoutMs: 800,
      });
      expect((await checker.check()).ready).toBe(true);
      await cluster!.stop();
      try {
        await new Promise((resolve) => setTimeout(resolve, ttlMs));
        const down = await checker.check();
        expect(down.ready).toBe(false);
        expect(down.components.postgres).toMatchObject({ status: 'unavailable' });
        expect(down.components.postgres?.error).toMatch(/PostgreSQL/);
      } finally {
        await cluster!.start();
      }
      // Reconnecting after a restart takes what it takes on a loaded machine: no bound but a ceiling.
      await eventually(async () => (await checker.check()).ready, 10_000);
    },
  );
});

/** A client of whatever listens at `port` on loopback, its log lines kept. */
function clientAt(port: number, env: NodeJS.ProcessEnv = {}) {
  const lines: string[] = [];
  const settings = loadSettings({
    PGHOST: '127.0.0.1',
    PGPORT: String(port),
    PGDATABASE: APP_DATABASE,
    PGUSER: APP_ROLE,
    PGPASSWORD: APP_PASSWORD,
    PGSSLMODE: 'disable',
    ...env,
  });
  const db = buildPostgresClient(settings, {
    vault: buildVaultClient(settings),
    logger: createLogger('debug', (line) => lines.push(line)),
    registry: new Registry(),
  });
  opened.push(db);
  return { db, lines };
}

/**
 * A TCP server on loopback that answers a PostgreSQL client's first message as `onFirst` says:
 * the start of the protocol only, which is all these failures need.
 */
async function protocolServer(onFirst: (socket: net.Socket) => void): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.once('data', () => {
      onFirst(socket);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return (server.address() as net.AddressInfo).port;
}
const servers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((close) => close()));
});

/** One PostgreSQL protocol message (55.7): its type byte, its length, its body. */
function pgMessage(type: string, body: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeInt32BE(body.length + 4);
  return Buffer.concat([Buffer.from(type), length, body]);
}
/** An ErrorResponse with severity FATAL, the SQLSTATE `code` and the message `text`. */
const fatal = (code: string, text: string) =>
  pgMessage('E', Buffer.from(`SFATAL\0VFATAL\0C${code}\0M${text}\0\0`));
/** Trust authentication, then ReadyForQuery: a session that takes queries. */
const sessionOpen = Buffer.concat([
  pgMessage('R', Buffer.from([0, 0, 0, 0])),
  pgMessage('Z', Buffer.from('I')),
]);

describe('PostgresClient failures before a server answers a query', () => {
  it('names a refused connection with the host and port, in errors and readiness', async () => {
    const port = await freePort();
    const { db, lines } = clientAt(port);
    const reason = `cannot reach PostgreSQL at 127.0.0.1:${port} (ECONNREFUSED)`;
    const error = await failureOf(db.query('first', 'SELECT 1'));
    expect([error.name, error.message, error.sqlState, error.serverMessage]).toEqual([
      'PostgresError',
      reason,
      undefined,
      undefined,
    ]);
    expect(await db.healthCheck()).toMatchObject({ status: 'unavailable', error: reason });
    // Not taken for a refused password: not logged as one, nor read again.
    expect(lines.join('\n')).not.toContain('refused the password');
  });

  it('names a server that closes the connection before answering', async () => {
    const port = await protocolServer((socket) => socket.destroy());
    const { db } = clientAt(port);
    const error = await failureOf(db.query('first', 'SELECT 1'));
    expect(error.message).toBe('PostgreSQL closed the connection');
  });

  it('names a server that does not answer within PG_CONNECT_TIMEOUT_MS', async () => {
    const port = await protocolServer(() => undefined);
    const { db } = clientAt(port, { PG_CONNECT_TIMEOUT_MS: '200' });
    const error = await failureOf(db.query('first', 'SELECT 1'));
    expect(error.message).toBe(`no connection to PostgreSQL at 127.0.0.1:${port} within 200 ms`);
  });

  it('survives a server that ends the session during a statement, and connects again', async () => {
    // PostgreSQL's protocol (55.2): trust authentication, then to every query the ErrorResponse a
    // fast shutdown or pg_terminate_backend sends (FATAL 57P01), and the end of the connection
    // in the same write, so that the client reads both at once.
    const terminated = fatal('57P01', 'terminating connection due to administrator command');
    const port = await protocolServer((socket) => {
      socket.write(sessionOpen);
      socket.once('data', () => {
        socket.end(terminated);
      });
    });
    const { db } = clientAt(port);
    for (const operation of ['first', 'second']) {
      const error = await failureOf(db.query(operation, 'SELECT 1'));
      expect([error.message, error.sqlState]).toEqual([
        'PostgreSQL is shutting down or starting (SQLSTATE 57P01)',
        '57P01',
      ]);
    }
  });

  it('survives a server that closes the connection during a statement without a word', async () => {
    // No ErrorResponse: the end of the connection is all the client learns, while the statement's
    // connection is held (the pool listens for errors only on idle ones).
    const port = await protocolServer((socket) => {
      socket.write(sessionOpen);
      socket.once('data', () => socket.end());
    });
    const { db } = clientAt(port);
    for (const operation of ['first', 'second']) {
      const error = await failureOf(db.query(operation, 'SELECT 1'));
      expect([error.message, error.sqlState]).toEqual([
        'PostgreSQL closed the connection',
        undefined,
      ]);
    }
  });

  const passwordRefused = () =>
    fatal('28P01', `password authentication failed for user "${APP_ROLE}"`);
  /** A query refused for the password, and no second try said in the log. */
  async function expectRefusedWithoutRetry({ db, lines }: ReturnType<typeof clientAt>) {
    const error = await failureOf(db.query('first', 'SELECT 1'));
    expect([error.message, error.sqlState]).toEqual([
      `PostgreSQL refused the password of role "${APP_ROLE}"`,
      '28P01',
    ]);
    expect(lines.join('\n')).not.toContain('trying the one read again');
  }

  /** A server that asks for the password in clear (55.2.1) and keeps what it is sent. */
  async function askingServer(answer: (socket: net.Socket) => void) {
    const passwords: string[] = [];
    const port = await protocolServer((socket) => {
      socket.write(pgMessage('R', Buffer.from([0, 0, 0, 3])));
      socket.once('data', (password) => {
        passwords.push(password.subarray(5, -1).toString());
        answer(socket);
      });
    });
    return { port, passwords };
  }

  it('sends an empty password when none is configured, and does not read one', async () => {
    const { port, passwords } = await askingServer((socket) => socket.end(passwordRefused()));
    await expectRefusedWithoutRetry(clientAt(port, { PGPASSWORD: '' }));
    expect(passwords).toEqual(['']);
  });

  it('names a password it cannot read from Vault', async () => {
    const { port, passwords } = await askingServer((socket) => socket.end(passwordRefused()));
    vault.tokens.set('pg-missing-token', Date.now() + 600_000);
    const { db } = clientAt(port, {
      PGPASSWORD: '',
      VAULT_ADDR: vault.url,
      VAULT_TOKEN: 'pg-missing-token',
      PG_PASSWORD_VAULT_PATH: 'coffeebuddy/nowhere',
    });
    const error = await failureOf(db.query('first', 'SELECT 1'));
    expect(error.message).toMatch(/^cannot read the PostgreSQL password: \S/);
    expect(passwords).toEqual([]);
  });

  it('does not try again when reading the password again gives the same one', async () => {
    const { port, passwords } = await askingServer((socket) => socket.end(passwordRefused()));
    await expectRefusedWithoutRetry(clientAt(port, { PGPASSWORD: 'the-only-password' }));
    expect(passwords).toEqual(['the-only-password']);
  });

  it('names a query the server never answers, and drops that connection', async () => {
    // Trust authentication, ready for queries, then silence: the client's own query timeout
    // (statement_timeout + the connect timeout) is what ends the wait.
    let connections = 0;
    const port = await protocolServer((socket) => {
      connections += 1;
      socket.write(sessionOpen);
    });
    const { db } = clientAt(port, {
      PG_STATEMENT_TIMEOUT_MS: '200',
      PG_CONNECT_TIMEOUT_MS: '1000',
    });
    for (const operation of ['first', 'second']) {
      const error = await failureOf(db.query(operation, 'SELECT 1'));
      expect([error.message, error.sqlState]).toEqual([
        `query ${operation} got no answer in time`,
        undefined,
      ]);
    }
    // The connection left waiting was not given to the second query.
    expect(connections).toBe(2);
  });

  it.each([
    ['57P02', 'terminating connection because of crash of another server process'],
    ['57P03', 'the database system is starting up'],
  ])(
    'names a server that refuses to connect with SQLSTATE %s: shutting down or starting',
    async (code, text) => {
      // The ErrorResponse a server sends to a startup message while it cannot take connections.
      const port = await protocolServer((socket) => {
        socket.end(fatal(code, text));
      });
      const { db } = clientAt(port);
      const error = await failureOf(db.query('first', 'SELECT 1'));
      expect([error.message, error.sqlState, error.serverMessage]).toEqual([
        `PostgreSQL is shutting down or starting (SQLSTATE ${code})`,
        code,
        text,
      ]);
    },
  );

  it('names a server that offers no TLS when PGSSLMODE asks for it', async () => {
    // "N": the answer to SSLRequest of a server without TLS (PostgreSQL protocol, 55.2.10).
    const port = await protocolServer((socket) => socket.write('N'));
    const { db } = clientAt(port, { PGSSLMODE: 'require' });
    const error = await failureOf(db.query('first', 'SELECT 1'));
    expect(error.message).toBe(`PostgreSQL at 127.0.0.1:${port} offers no TLS`);
  });
});

/**
 * A PostgreSQL server's TLS, as far as the handshake: it answers SSLRequest with "S", then shakes
 * hands with a self-signed certificate for db.example (not 127.0.0.1), then closes. Whether the
 * client reports a closed connection (handshake accepted) or a failure (certificate refused) shows
 * what PGSSLMODE checked.
 */
describe('PGSSLMODE against a server with a certificate for another name', () => {
  const itWithOpenssl = itWithCommand('openssl', 'apt-get install openssl');
  const haveOpenssl = findCommand('openssl') !== undefined;
  let dir: string;
  let certFile: string;
  let port: number;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-tls-'));
    if (!haveOpenssl) return;
    certFile = path.join(dir, 'cert.pem');
    const keyFile = path.join(dir, 'key.pem');
    execFileSync(
      'openssl',
      [
        ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'],
        ...['-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1'],
        ...['-subj', '/CN=db.example', '-addext', 'subjectAltName=DNS:db.example'],
      ],
      { stdio: 'ignore' },
    );
  });
  beforeEach(async () => {
    if (!haveOpenssl) return;
    const context = {
      cert: fs.readFileSync(certFile),
      key: fs.readFileSync(path.join(dir, 'key.pem')),
    };
    port = await protocolServer((socket) => {
      const secure = new tls.TLSSocket(socket, { isServer: true, ...context });
      secure.on('error', () => undefined);
      secure.once('secure', () => secure.destroy());
      socket.write('S');
    });
  });
  afterAll(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const reasonWith = async (env: NodeJS.ProcessEnv) =>
    (await failureOf(clientAt(port, env).db.query('first', 'SELECT 1'))).message;

  itWithOpenssl('require: encrypts without checking the certificate', async () => {
    expect(await reasonWith({ PGSSLMODE: 'require' })).toBe('PostgreSQL closed the connection');
  });

  itWithOpenssl(
    'verify-ca: checks the chain against PGSSLROOTCERT, not the host name',
    async () => {
      expect(await reasonWith({ PGSSLMODE: 'verify-ca', PGSSLROOTCERT: certFile })).toBe(
        'PostgreSQL closed the connection',
      );
      expect(await reasonWith({ PGSSLMODE: 'verify-ca' })).toBe('the connection failed');
    },
  );

  itWithOpenssl('verify-full: checks the host name too', async () => {
    expect(await reasonWith({ PGSSLMODE: 'verify-full', PGSSLROOTCERT: certFile })).toBe(
      'the connection failed',
    );
  });
});
