import path from 'node:path';
import { REPO_ROOT, requireBuild, runToExit, startProcess } from '../../testing/process';
import {
  APP_PASSWORD,
  APP_ROLE,
  itWithPostgres,
  startPostgres,
  type PostgresCluster,
} from '../../testing/postgres';

/** The built bundles: the migration Job's entry on a real server, and the default entry's start. */
let cluster: PostgresCluster | undefined;

beforeAll(async () => {
  requireBuild();
  cluster = await startPostgres().catch(() => undefined);
}, 60_000);

afterAll(async () => {
  await cluster?.remove();
}, 60_000);

const PRELOAD = path.join(REPO_ROOT, 'test', 'support', 'required-modules.js');

describe('the built bundles', () => {
  itWithPostgres(
    'node dist/migrate.cjs applies the repository’s migrations, then does nothing',
    async () => {
      await cluster!.admin(`CREATE DATABASE bundle_migrate OWNER ${APP_ROLE}`);
      const env = cluster!.env({ PGDATABASE: 'bundle_migrate', PGPASSWORD: APP_PASSWORD });
      const first = await runToExit(['dist/migrate.cjs'], env);
      expect([first.code, first.stderr]).toEqual([0, '']);
      const done = (out: string) =>
        out
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l))
          .find((l) => l.msg === 'migrations done');
      expect(done(first.stdout).applied).toContain('0001_slack_events');
      const second = await runToExit(['dist/migrate.cjs'], env);
      expect(second.code).toBe(0);
      expect(done(second.stdout)).toMatchObject({ applied: [] });
      expect(second.stdout).not.toContain(APP_PASSWORD);
    },
  );

  it('node dist/migrate.cjs exits 1 with one reason when PostgreSQL is unreachable', async () => {
    const result = await runToExit(['dist/migrate.cjs'], {
      PGHOST: '127.0.0.1',
      PGPORT: '9',
      PGSSLMODE: 'disable',
      PG_CONNECT_TIMEOUT_MS: '1000',
    });
    expect(result.code).toBe(1);
    const lines = result.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines).toEqual([
      expect.objectContaining({
        level: 'error',
        msg: 'migrations failed',
        reason: 'cannot reach PostgreSQL at 127.0.0.1:9 (ECONNREFUSED)',
      }),
    ]);
  });

  it('the default entry (dist/main.cjs) starts without evaluating pg', async () => {
    const main = await startProcess({
      args: ['-r', PRELOAD, 'dist/main.cjs'],
      env: { LISTEN_HOST: '127.0.0.1' },
    });
    try {
      main.child.kill('SIGUSR2');
      const deadline = Date.now() + 5000;
      while (!main.output().includes('REQUIRED ') && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const required = JSON.parse(/REQUIRED (.*)/.exec(main.output())![1]!) as string[];
      expect(required).toContain('http');
      // pg's connection parameters module requires dns as it is evaluated; nothing else here does.
      expect(required).not.toContain('dns');
    } finally {
      await main.stop();
    }
  });

  it('the probe shows pg itself requires dns when evaluated (so the check above means something)', async () => {
    const result = await runToExit(
      ['-r', PRELOAD, '-e', "require('pg'); process.emit('SIGUSR2')"],
      {},
    );
    expect(result.stderr).toMatch(/REQUIRED .*"dns"/);
  });
});
