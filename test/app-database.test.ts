import request from 'supertest';
import { appHarness } from '../testing/app';
import {
  APP_PASSWORD,
  itWithPostgres,
  startPostgres,
  type PostgresCluster,
} from '../testing/postgres';
import { eventually, findCommand, promtoolCheckMetrics } from '../testing/tools';

/** createApp's `database` option: only apps that use PostgreSQL connect, check and export it. */
let cluster: PostgresCluster | undefined;

beforeAll(async () => {
  cluster = await startPostgres().catch(() => undefined);
}, 60_000);

afterAll(async () => {
  await cluster?.remove();
}, 60_000);

const harness = appHarness({ env: { READINESS_CACHE_TTL_MS: '0' } });

describe('createApp with and without the database', () => {
  it('without it (the Slack ingress, the probes): no postgres component, no database metrics', async () => {
    const { app, server } = await harness({
      postgresClientFactory: () => {
        throw new Error('must not be built');
      },
    });
    expect(app.postgres).toBeUndefined();
    const ready = await request(server).get('/health/ready').expect(200);
    expect(Object.keys(ready.body.components).sort()).toEqual(['ory', 'vault']);
    const metrics = await request(server).get('/metrics').expect(200);
    expect(metrics.text).not.toContain('coffeebuddy_db_');
  });

  itWithPostgres(
    'with it: /health/ready checks postgres, /metrics has the pool and queries',
    async () => {
      const { app, server } = await harness({
        database: true,
        env: { READINESS_CACHE_TTL_MS: '0', ...cluster!.env({ PGPASSWORD: APP_PASSWORD }) },
      });
      const ready = await request(server).get('/health/ready').expect(200);
      expect(ready.body.components.postgres).toMatchObject({ status: 'ok' });
      const metrics = (await request(server).get('/metrics').expect(200)).text;
      for (const state of ['total', 'idle', 'waiting']) {
        expect(metrics).toContain(`coffeebuddy_db_pool_connections{state="${state}"}`);
      }
      expect(metrics).toContain(
        'coffeebuddy_db_query_duration_seconds_count{operation="health_check",outcome="ok"}',
      );
      expect(metrics).toContain('coffeebuddy_dependency_up{component="postgres"} 1');
      if (findCommand('promtool') !== undefined)
        expect(promtoolCheckMetrics(metrics).status).toBe(0);
      await app.postgres!.close();
    },
  );

  itWithPostgres(
    'with it, PostgreSQL stopped: 503 naming postgres, then 200 after a restart',
    async () => {
      const { app, server } = await harness({
        database: true,
        env: {
          READINESS_CACHE_TTL_MS: '200',
          PG_CONNECT_TIMEOUT_MS: '5000',
          ...cluster!.env({ PGPASSWORD: APP_PASSWORD }),
        },
      });
      await request(server).get('/health/ready').expect(200);
      await cluster!.stop();
      try {
        await new Promise((resolve) => setTimeout(resolve, 200));
        const down = await request(server).get('/health/ready').expect(503);
        expect(down.body.detail.components.postgres.status).toBe('unavailable');
        expect(down.body.detail.components.vault.status).toBe('ok');
      } finally {
        await cluster!.start();
      }
      // Reconnecting after a restart takes what it takes on a loaded machine: no bound but a ceiling.
      await eventually(
        async () => (await request(server).get('/health/ready')).status === 200,
        10_000,
      );
      await app.postgres!.close();
    },
  );
});
