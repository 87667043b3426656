import { Registry } from 'prom-client';
import request from 'supertest';
import { buildVaultClient } from '../../lib/clients/vault';
import { buildPostgresClient, type PostgresClient } from '../../lib/clients/postgres';
import { loadSettings } from '../../lib/config/settings';
import { createLogger } from '../../lib/logger';
import { Upstream } from '../../lib/http/upstream';
import { SlackHandlers } from '../../lib/slack/handlers';
import { signSlackRequest } from '../../lib/slack/signature';
import { appHarness } from '../../testing/app';
import { APP_PASSWORD, itWithPostgres, startPostgres } from '../../testing/postgres';
import { startOryStandIn } from '../../testing/standins';
import { eventually } from '../../testing/tools';
import { SYSTEM_TOLERANCE_MS } from './tolerance';

const SECRET = 'deadline-secret';
/** How long the app lets a slash command run (functions/app.ts) before it answers for it. */
const COMMAND_TIMEOUT_MS = 2500;
const build = appHarness({ env: { SLACK_SIGNING_SECRET: SECRET } });

describe('deadlines', () => {
  it('answers a slash command within Slack’s 3 seconds when the subcommand never finishes', async () => {
    const handlers = new SlackHandlers().addSubcommand('stuck', {
      description: 'never answers',
      run: () => new Promise<string>(() => undefined),
    });
    const { server } = await build({ slackHandlers: handlers });
    const body = new URLSearchParams({ command: '/coffee', text: 'stuck' }).toString();
    const timestamp = String(Math.floor(Date.now() / 1000));
    const started = performance.now();
    const res = await request(server)
      .post('/slack/commands')
      .type('form')
      .set('X-Slack-Request-Timestamp', timestamp)
      .set('X-Slack-Signature', signSlackRequest(SECRET, timestamp, body))
      .send(body)
      .expect(200);
    const elapsed = performance.now() - started;
    expect(res.body.text).toContain('longer than Slack waits');
    expect(elapsed).toBeGreaterThanOrEqual(COMMAND_TIMEOUT_MS - 10);
    expect(elapsed).toBeLessThan(COMMAND_TIMEOUT_MS + SYSTEM_TOLERANCE_MS);
  });

  it('gives up on an upstream that accepts and never answers after its timeout', async () => {
    const TIMEOUT_MS = 200;
    const ory = await startOryStandIn();
    const upstream = new Upstream(ory.url, TIMEOUT_MS);
    try {
      ory.fault = { kind: 'hang' };
      const started = performance.now();
      const health = await upstream.check('/health/ready', () => undefined);
      const elapsed = performance.now() - started;
      expect(health).toMatchObject({ error: `timeout after ${TIMEOUT_MS} ms` });
      // A timer may fire up to a millisecond early by the wall clock.
      expect(elapsed).toBeGreaterThanOrEqual(TIMEOUT_MS - 1);
      expect(elapsed).toBeLessThan(TIMEOUT_MS + SYSTEM_TOLERANCE_MS);
    } finally {
      upstream.close();
      await ory.close();
    }
  });

  /** Runs `fn` against a fresh PostgreSQL cluster and a client built from its settings. */
  async function withPostgres(
    env: NodeJS.ProcessEnv,
    fn: (db: PostgresClient, registry: Registry) => Promise<void>,
  ): Promise<void> {
    const cluster = await startPostgres();
    const registry = new Registry();
    const settings = loadSettings(cluster.env({ PGPASSWORD: APP_PASSWORD, ...env }));
    const db = buildPostgresClient(settings, {
      vault: buildVaultClient(settings),
      logger: createLogger('error', () => undefined),
      registry,
    });
    try {
      await fn(db, registry);
    } finally {
      await db.close();
      await cluster.remove();
    }
  }

  itWithPostgres(
    'cuts a query at PG_STATEMENT_TIMEOUT_MS',
    () =>
      withPostgres({ PG_STATEMENT_TIMEOUT_MS: '200' }, async (db) => {
        // Connected first: what is timed is the statement, not a connection's start-up.
        await db.query('warm', 'SELECT 1');
        const started = performance.now();
        await expect(db.query('sleep', 'SELECT pg_sleep(5)')).rejects.toThrow(/statement_timeout/);
        expect(performance.now() - started).toBeLessThan(200 + SYSTEM_TOLERANCE_MS);
      }),
    60_000,
  );

  itWithPostgres(
    'gives up waiting for a pooled connection at PG_CONNECT_TIMEOUT_MS',
    () => {
      // Long enough for the holders' own connections to start on a loaded machine; they hold
      // theirs past the starved query's timeout and tolerance, so that waiting for one to be
      // freed instead is seen.
      const CONNECT_TIMEOUT_MS = 1000;
      const HOLD_S = (CONNECT_TIMEOUT_MS + 2 * SYSTEM_TOLERANCE_MS) / 1000;
      const env = {
        PG_POOL_MAX: '2',
        PG_CONNECT_TIMEOUT_MS: String(CONNECT_TIMEOUT_MS),
        PG_STATEMENT_TIMEOUT_MS: '60000',
      };
      return withPostgres(env, async (db, registry) => {
        const holders = [0, 1].map(() => db.query('hold', `SELECT pg_sleep(${HOLD_S})`));
        await eventually(async () =>
          (await registry.metrics()).includes('coffeebuddy_db_pool_connections{state="total"} 2'),
        );
        const started = performance.now();
        await expect(db.query('starved', 'SELECT 1')).rejects.toThrow(
          `no free PostgreSQL connection within ${CONNECT_TIMEOUT_MS} ms: all 2 in use`,
        );
        const waitedMs = performance.now() - started;
        // A timer may fire up to a millisecond early by the wall clock.
        expect(waitedMs).toBeGreaterThanOrEqual(CONNECT_TIMEOUT_MS - 1);
        expect(waitedMs).toBeLessThan(CONNECT_TIMEOUT_MS + SYSTEM_TOLERANCE_MS);
        await Promise.all(holders);
      });
    },
    60_000,
  );
});
