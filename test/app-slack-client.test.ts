import request from 'supertest';
import type { PostgresClient } from '../lib/clients/postgres';
import { componentHealth } from '../lib/health';
import type { SlackClient, SlackClientFactory } from '../lib/slack/client';
import { buildSlackClient } from '../lib/slack/web-api';
import { appHarness } from '../testing/app';
import { metricValue } from '../testing/metrics-text';
import { startSlackApiStandIn, type SlackApiStandIn } from '../testing/slack-api';

/** createApp's slackClientFactory: which apps get a Slack client, its metrics, and its close. */

const TOKEN = 'xoxb-app-client-5e6f';

/** A database that is never reached: these apps are built, not served events. */
const idlePostgres: PostgresClient = {
  healthCheck: () => Promise.resolve(componentHealth(0)),
  query: () => Promise.reject(new Error('no database here')),
  withConnection: () => Promise.reject(new Error('no database here')),
  close: () => Promise.resolve(),
};

describe('the Slack client in createApp', () => {
  let slack: SlackApiStandIn;
  const harness = appHarness();

  beforeAll(async () => {
    slack = await startSlackApiStandIn([TOKEN]);
  });
  afterAll(() => slack.close());

  /** The default factory, noting what it built and whether the app closed it. */
  const recording = () => {
    const built: { client: SlackClient; closed: number }[] = [];
    const factory: SlackClientFactory = (settings, deps) => {
      const client = buildSlackClient(settings, deps);
      const entry = { client, closed: 0 };
      built.push(entry);
      return {
        call: (method, args, options) => client.call(method, args, options),
        close: () => {
          entry.closed += 1;
          client.close?.();
        },
      };
    };
    return { built, factory };
  };

  it('the ingress: app.slack calls Slack, counted on its /metrics, and app.close() closes it', async () => {
    const { built, factory } = recording();
    const { app, server } = await harness({
      slackClientFactory: factory,
      env: { SLACK_BOT_TOKEN: TOKEN, SLACK_API_URL: slack.url },
    });
    const fresh = (await request(server).get('/metrics').expect(200)).text;
    expect(
      metricValue(fresh, 'coffeebuddy_slack_api_calls_total', {
        method: 'chat.postMessage',
        outcome: 'ok',
      }),
    ).toBe(0);
    await expect(
      app.slack!.call('chat.postMessage', { channel: 'C1', text: 'hi' }),
    ).resolves.toMatchObject({ ok: true });
    const after = (await request(server).get('/metrics').expect(200)).text;
    expect(
      metricValue(after, 'coffeebuddy_slack_api_calls_total', {
        method: 'chat.postMessage',
        outcome: 'ok',
      }),
    ).toBe(1);
    expect(built).toHaveLength(1);
    await app.close();
    expect(built[0]!.closed).toBe(1);
  });

  it('the worker gets one; the dead-letter app none', async () => {
    const worker = recording();
    const { app } = await harness({
      target: 'slackWorker',
      slackClientFactory: worker.factory,
      postgresClientFactory: () => idlePostgres,
    });
    expect(app.slack).toBeDefined();
    expect(worker.built).toHaveLength(1);
    const deadLetter = await harness({
      target: 'slackDeadLetter',
      slackClientFactory: () => {
        throw new Error('must not be built');
      },
      postgresClientFactory: () => idlePostgres,
    });
    expect(deadLetter.app.slack).toBeUndefined();
    const metrics = await deadLetter.app.registry.metrics();
    expect(metrics).not.toContain('coffeebuddy_slack_api_');
  });

  it('with no token configured, a call rejects not_configured and the app lives on', async () => {
    const { app, server } = await harness({ env: { SLACK_API_URL: slack.url } });
    await expect(app.slack!.call('chat.postMessage', { channel: 'C1' })).rejects.toMatchObject({
      name: 'SlackApiError',
      code: 'not_configured',
    });
    await request(server).get('/health/live').expect(200);
  });
});
