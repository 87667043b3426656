// The migration Job's entry: `node dist/migrate.cjs` in the image, `npm run migrate` in a checkout.
// Applies the SQL files in migrations/ (beside dist/ in the image) with the runtime's settings,
// then exits: 0 when the schema is current, 1 when a migration failed, 78 for bad settings.
import path from 'node:path';
import { Registry } from 'prom-client';
import { buildPostgresClient } from '../lib/clients/postgres';
import { buildVaultClient } from '../lib/clients/vault';
import { EXIT_CONFIG, SettingsError, loadSettings } from '../lib/config/settings';
import { reasonOf } from '../lib/errors';
import { createLogger } from '../lib/logger';
import { MigrationError, migrate, readMigrations } from '../lib/migrations';

const MIGRATIONS_DIR = path.resolve(__dirname, '..', 'migrations');

async function main(): Promise<number> {
  let settings;
  try {
    settings = loadSettings(process.env);
  } catch (error) {
    if (!(error instanceof SettingsError)) throw error;
    process.stderr.write(`coffeebuddy-migrate: ${error.message}\n`);
    return EXIT_CONFIG;
  }
  const logger = createLogger(settings.LOG_LEVEL);
  const vault = buildVaultClient(settings);
  // No statement_timeout: an index build may take minutes; the Job's activeDeadlineSeconds
  // bounds the run instead.
  const db = buildPostgresClient(
    { ...settings, PG_STATEMENT_TIMEOUT_MS: 0, PG_POOL_MAX: 1 },
    { vault, logger, registry: new Registry() },
  );
  try {
    const result = await migrate(db, readMigrations(MIGRATIONS_DIR), logger);
    logger.info('migrations done', { applied: result.applied, alreadyApplied: result.skipped });
    return 0;
  } catch (error) {
    const reason = error instanceof MigrationError ? error.message : reasonOf(error);
    logger.error('migrations failed', { reason });
    return 1;
  } finally {
    await db.close();
    vault.close?.();
  }
}

void main().then((code) => {
  process.exitCode = code;
});
