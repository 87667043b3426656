import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { PostgresClient, Queryable } from './clients/postgres';
import { PostgresError } from './clients/postgres';
import type { Logger } from './logger';

/** One versioned SQL file, `NNNN_name.sql`: statements only, no BEGIN or COMMIT of its own. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
  /** sha256 of the file: an applied migration whose file changed afterwards is refused. */
  checksum: string;
}

export interface MigrationResult {
  /** Applied by this run, in order. */
  applied: string[];
  /** Found applied already. */
  skipped: number;
}

const FILE_NAME = /^(\d{4})_([a-z0-9_]+)\.sql$/;
/** The advisory lock every runner takes: a fixed number, CoffeeBuddy's migrations' own. */
const LOCK_KEY = 7_242_020_001;

/** Why a run stopped; the message is for the operator running the Job. */
export class MigrationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MigrationError';
  }
}

/** The migrations in `dir`, by version; a stray .sql name or a repeated version is refused. */
export function readMigrations(dir: string): Migration[] {
  const migrations = fs
    .readdirSync(dir)
    .filter((file) => file.endsWith('.sql'))
    .map((file) => {
      const match = FILE_NAME.exec(file);
      if (match === null) throw new MigrationError(`${file}: name it NNNN_lowercase_words.sql`);
      const sql = fs.readFileSync(path.join(dir, file), 'utf8');
      return {
        version: Number(match[1]),
        name: file.slice(0, -'.sql'.length),
        sql,
        checksum: createHash('sha256').update(sql).digest('hex'),
      };
    })
    .sort((a, b) => a.version - b.version);
  migrations.forEach((m, i) => {
    if (i > 0 && migrations[i - 1]?.version === m.version) {
      throw new MigrationError(`${m.name}: version ${m.version} is used twice`);
    }
  });
  return migrations;
}

const CREATE_TABLE = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version integer PRIMARY KEY,
  name text NOT NULL,
  checksum text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
)`;

/**
 * Applies the pending migrations in order, each in its own transaction with its record in
 * schema_migrations, under a session advisory lock: a second runner waits, then finds nothing
 * left to do. A run with nothing pending changes nothing.
 */
export function migrate(
  db: PostgresClient,
  migrations: readonly Migration[],
  logger: Logger,
): Promise<MigrationResult> {
  return db.withConnection(async (connection) => {
    await connection.query('migrate_lock', 'SELECT pg_advisory_lock($1)', [LOCK_KEY]);
    try {
      await connection.query('migrate_setup', CREATE_TABLE);
      const pending = await pendingOf(connection, migrations, logger);
      for (const migration of pending) await apply(connection, migration);
      return {
        applied: pending.map((m) => m.name),
        skipped: migrations.length - pending.length,
      };
    } finally {
      // Ends with the session too; released here so a pooled connection does not keep it.
      await connection
        .query('migrate_unlock', 'SELECT pg_advisory_unlock($1)', [LOCK_KEY])
        .catch(() => undefined);
    }
  });
}

async function pendingOf(
  connection: Queryable,
  migrations: readonly Migration[],
  logger: Logger,
): Promise<Migration[]> {
  const { rows } = await connection.query<{ version: number; name: string; checksum: string }>(
    'migrate_list',
    'SELECT version, name, checksum FROM schema_migrations ORDER BY version',
  );
  const applied = new Map(rows.map((row) => [row.version, row]));
  for (const row of rows) {
    const file = migrations.find((m) => m.version === row.version);
    if (file === undefined) {
      // An older image after a newer one migrated: its code predates the schema, not an error.
      logger.warn('applied migration not in this build', { migration: row.name });
    } else if (file.checksum !== row.checksum) {
      throw new MigrationError(`${file.name}: changed after it was applied; add a new migration`);
    }
  }
  return migrations.filter((m) => !applied.has(m.version));
}

async function apply(connection: Queryable, migration: Migration): Promise<void> {
  await connection.query('migrate_begin', 'BEGIN');
  try {
    await connection.query('migrate_apply', migration.sql);
    await connection.query(
      'migrate_record',
      'INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)',
      [migration.version, migration.name, migration.checksum],
    );
    await connection.query('migrate_commit', 'COMMIT');
  } catch (error) {
    await connection.query('migrate_rollback', 'ROLLBACK').catch(() => undefined);
    // The server's own words help here: the SQL is the repository's, not a user's.
    const detail =
      error instanceof PostgresError && error.serverMessage !== undefined
        ? `: ${error.serverMessage}`
        : '';
    const reason = error instanceof Error ? error.message : 'failed';
    throw new MigrationError(`${migration.name}: ${reason}${detail}; rolled back`);
  }
}
