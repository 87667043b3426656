import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { buildPostgresClient, type PostgresClient } from '../lib/clients/postgres';
import { FakeClient } from '../testing/fakes';
import { loadSettings } from '../lib/config/settings';
import { createLogger } from '../lib/logger';
import { MigrationError, migrate, readMigrations } from '../lib/migrations';
import { REPO_ROOT } from '../testing/process';
import {
  APP_PASSWORD,
  APP_ROLE,
  itWithPostgres,
  startPostgres,
  type PostgresCluster,
} from '../testing/postgres';

let cluster: PostgresCluster | undefined;
const opened: PostgresClient[] = [];
const dirs: string[] = [];
let databases = 0;

beforeAll(async () => {
  cluster = await startPostgres().catch(() => undefined);
}, 60_000);

afterAll(async () => {
  await Promise.all(opened.splice(0).map((c) => c.close()));
  await cluster?.remove();
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
}, 60_000);

/** A new empty database, and a client for it (each test starts from nothing). */
async function emptyDatabase(): Promise<() => PostgresClient> {
  const name = `migrations_${++databases}`;
  await cluster!.admin(`CREATE DATABASE ${name} OWNER ${APP_ROLE}`);
  return () => {
    const settings = loadSettings(cluster!.env({ PGDATABASE: name, PGPASSWORD: APP_PASSWORD }));
    const db = buildPostgresClient(settings, {
      vault: new FakeClient(),
      logger: createLogger('error'),
      registry: new Registry(),
    });
    opened.push(db);
    return db;
  };
}

function migrationsDir(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'migrations-'));
  dirs.push(dir);
  for (const [name, sql] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), sql);
  return dir;
}

const FILES = {
  '0001_people.sql': 'CREATE TABLE people (id serial PRIMARY KEY, name text NOT NULL);',
  '0002_orders.sql':
    "CREATE TABLE orders (id serial PRIMARY KEY, person integer REFERENCES people);\nINSERT INTO people (name) VALUES ('first');",
};
const logger = createLogger('error');

describe('migrations', () => {
  itWithPostgres('apply in order from an empty database, recording each', async () => {
    const db = (await emptyDatabase())();
    const result = await migrate(db, readMigrations(migrationsDir(FILES)), logger);
    expect(result).toEqual({ applied: ['0001_people', '0002_orders'], skipped: 0 });
    const { rows } = await db.query(
      'list',
      'SELECT version, name FROM schema_migrations ORDER BY 1',
    );
    expect(rows).toEqual([
      { version: 1, name: '0001_people' },
      { version: 2, name: '0002_orders' },
    ]);
  });

  itWithPostgres('do nothing when run again', async () => {
    const db = (await emptyDatabase())();
    const migrations = readMigrations(migrationsDir(FILES));
    await migrate(db, migrations, logger);
    expect(await migrate(db, migrations, logger)).toEqual({ applied: [], skipped: 2 });
    const { rows } = await db.query('count', 'SELECT count(*)::int AS n FROM people');
    expect(rows).toEqual([{ n: 1 }]);
  });

  itWithPostgres(
    'are safe run twice at once: both succeed, each migration applied once',
    async () => {
      const client = await emptyDatabase();
      // A slow first migration, so that the second runner really waits on the lock.
      const migrations = readMigrations(
        migrationsDir({ ...FILES, '0000_slow.sql': 'SELECT pg_sleep(0.3);' }),
      );
      const results = await Promise.all([
        migrate(client(), migrations, logger),
        migrate(client(), migrations, logger),
      ]);
      expect(results.map((r) => r.applied.length).sort()).toEqual([0, 3]);
      const db = client();
      const { rows } = await db.query('count', 'SELECT count(*)::int AS n FROM schema_migrations');
      expect(rows).toEqual([{ n: 3 }]);
      expect((await db.query('count', 'SELECT count(*)::int AS n FROM people')).rows).toEqual([
        { n: 1 },
      ]);
    },
  );

  itWithPostgres('roll a failing migration back whole and stop there', async () => {
    const db = (await emptyDatabase())();
    const dir = migrationsDir({
      ...FILES,
      '0003_broken.sql': 'CREATE TABLE kept (id int);\nSELECT no_such_column FROM people;',
    });
    await expect(migrate(db, readMigrations(dir), logger)).rejects.toThrow(
      /^0003_broken: query migrate_apply failed \(SQLSTATE 42703\): column "no_such_column" does not exist; rolled back$/,
    );
    const { rows } = await db.query('tables', "SELECT to_regclass('kept') IS NULL AS absent");
    expect(rows).toEqual([{ absent: true }]);
    const applied = await db.query('list', 'SELECT name FROM schema_migrations ORDER BY 1');
    expect(applied.rows.map((r) => r.name)).toEqual(['0001_people', '0002_orders']);
  });

  itWithPostgres('refuse an applied migration whose file changed', async () => {
    const db = (await emptyDatabase())();
    await migrate(db, readMigrations(migrationsDir(FILES)), logger);
    const changed = migrationsDir({ ...FILES, '0001_people.sql': 'CREATE TABLE people ();' });
    await expect(migrate(db, readMigrations(changed), logger)).rejects.toThrow(
      '0001_people: changed after it was applied; add a new migration',
    );
  });

  itWithPostgres('of the repository apply from empty', async () => {
    const db = (await emptyDatabase())();
    const migrations = readMigrations(path.join(REPO_ROOT, 'migrations'));
    expect(migrations.length).toBeGreaterThan(0);
    expect((await migrate(db, migrations, logger)).applied).toHaveLength(migrations.length);
  });

  itWithPostgres(
    '0003 over rows 0002 made: dead rows get their dead_at, and replayed is a state',
    async () => {
      const db = (await emptyDatabase())();
      const all = readMigrations(path.join(REPO_ROOT, 'migrations'));
      await migrate(
        db,
        all.filter((m) => m.version <= 2),
        logger,
      );
      await db.query(
        'seed',
        `INSERT INTO slack_work (source, id, type, state, updated_at) VALUES
           ('s', 'dead', 't', 'dead', '2026-01-02T03:04:05Z'), ('s', 'done', 't', 'done', now())`,
      );
      expect((await migrate(db, all, logger)).applied).toContain('0003_slack_dead_letters');
      const { rows } = await db.query(
        'read',
        `SELECT id, dead_at = '2026-01-02T03:04:05Z' AS dead_then, replays FROM slack_work ORDER BY id`,
      );
      expect(rows).toEqual([
        { id: 'dead', dead_then: true, replays: 0 },
        { id: 'done', dead_then: null, replays: 0 },
      ]);
      await db.query('replayed', `UPDATE slack_work SET state = 'replayed' WHERE id = 'dead'`);
      await expect(
        db.query('other', `UPDATE slack_work SET state = 'other' WHERE id = 'dead'`),
      ).rejects.toThrow(/23514/);
    },
  );

  it('are named NNNN_words.sql, each version once', () => {
    expect(() => readMigrations(migrationsDir({ 'people.sql': '' }))).toThrow(MigrationError);
    expect(() => readMigrations(migrationsDir({ '0001_a.sql': '', '0001_b.sql': '' }))).toThrow(
      '0001_b: version 1 is used twice',
    );
  });
});
