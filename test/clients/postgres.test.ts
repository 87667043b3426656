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
import {
  APP_PASSWORD,
  APP_ROLE,
  itWithPostgres,
  startPostgres,
  type PostgresCluster,
} from '../../testing/postgres';
import { startVaultStandIn, type VaultStandIn } from '../../testing/standins';
import { eventually, promtoolCheckMetrics, findCommand } from '../../testing/tools';

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
      expect((await db.healthCheck()).status).toBe('ok');
      const text = await registry.metrics();
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
    const { db } = client({ PG_STATEMENT_TIMEOUT_MS: '200' });
    // 57014 is a cancel: pg_sleep(5) did not run out. How soon: test/system/deadlines.test.ts.
    const error = await failureOf(db.query('sleep', 'SELECT pg_sleep(5)'));
    expect(error.sqlState).toBe('57014');
    expect(error.message).toBe(
      'query sleep was cancelled: it ran longer than statement_timeout (200 ms)',
    );
    // The connection stays usable after a server-side cancel.
    expect((await db.query('after', 'SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
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
      try {
        expect((await db.query('after', 'SELECT 2 AS two')).rows).toEqual([{ two: 2 }]);
        expect((await db.query('again', 'SELECT 3 AS three')).rows).toEqual([{ three: 3 }]);
        expect(vault.secretReads).toBe(reads + 1);
        expect(logs.some((l) => l.msg === 'PostgreSQL refused the password')).toBe(false);
      } finally {
        await cluster!.admin(`ALTER ROLE ${APP_ROLE} PASSWORD '${APP_PASSWORD}'`);
      }
    },
  );

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
