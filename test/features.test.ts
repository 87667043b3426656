import type http from 'node:http';
import request from 'supertest';
import { coffeeBuddyHandlers, FEATURES } from '../functions/features';
import { MENTION_REPLY_EVENT_TYPE } from '../functions/features/mention';
import type { Feature } from '../lib/slack/handlers';
import { signSlackRequest } from '../lib/slack/signature';
import { appHarness } from '../testing/app';
import { metricValue } from '../testing/metrics-text';
import {
  startSlackApiStandIn,
  type SlackApiCall,
  type SlackApiStandIn,
} from '../testing/slack-api';
import { eventually } from '../testing/tools';

/**
 * The features' seat (functions/features) as every entry serves it: the harness builds the app
 * with no handlers of its own, so what answers is the seat; the real Web API client calls the
 * Slack Web API stand-in. In process (no K_SINK): handlers run after the acknowledgement.
 */
const SECRET = 'features-signing-secret';
const TOKEN = 'xoxb-features-test-token-0a1b';

let slack: SlackApiStandIn;
beforeAll(async () => {
  slack = await startSlackApiStandIn([TOKEN]);
});
afterAll(() => slack.close());
afterEach(() => {
  slack.reset();
});

const harness = appHarness();
const app = (options: Parameters<typeof harness>[0] = {}) =>
  harness({
    env: { SLACK_SIGNING_SECRET: SECRET, SLACK_BOT_TOKEN: TOKEN, SLACK_API_URL: slack.url },
    ...options,
  });

function signed(server: http.Server, path: string, body: string, type: string) {
  const timestamp = String(Math.floor(Date.now() / 1000));
  return request(server)
    .post(path)
    .set('Content-Type', type)
    .set('X-Slack-Request-Timestamp', timestamp)
    .set('X-Slack-Signature', signSlackRequest(SECRET, timestamp, body))
    .send(body);
}

function mention(id: string, event: Record<string, unknown> = {}): string {
  return JSON.stringify({
    type: 'event_callback',
    team_id: 'T0001',
    event_id: id,
    event: {
      type: 'app_mention',
      user: 'U0042',
      text: '<@U0BOT> hello',
      channel: 'C0001',
      ts: '1700000000.000100',
      event_ts: '1700000000.000100',
      ...event,
    },
  });
}

/** Slack reads metadata posted as a form field as JSON text. */
const metadataOf = (call: SlackApiCall): unknown =>
  typeof call.args.metadata === 'string' ? JSON.parse(call.args.metadata) : call.args.metadata;

describe('the seat: CoffeeBuddy’s features, served by default', () => {
  it('answers a mention in a new thread under it, naming /coffee help, once', async () => {
    const { server } = await app();
    await signed(server, '/slack/events', mention('EvM1'), 'application/json').expect(200);
    await eventually(() => slack.callsOf('chat.postMessage').length === 1);
    const [post] = slack.callsOf('chat.postMessage');
    expect(post!.token).toBe(TOKEN);
    expect(post!.args).toMatchObject({ channel: 'C0001', thread_ts: '1700000000.000100' });
    expect(String(post!.args.text)).toContain('`/coffee help`');
    expect(metadataOf(post!)).toEqual({
      event_type: MENTION_REPLY_EVENT_TYPE,
      event_payload: { event_id: 'EvM1' },
    });
    // A first run asks Slack nothing else.
    expect(slack.calls.map((call) => call.method)).toEqual(['chat.postMessage']);
  });

  it('answers a mention inside a thread in that thread', async () => {
    const { server } = await app();
    const body = mention('EvM2', { thread_ts: '1699999999.000200' });
    await signed(server, '/slack/events', body, 'application/json').expect(200);
    await eventually(() => slack.callsOf('chat.postMessage').length === 1);
    expect(slack.callsOf('chat.postMessage')[0]!.args).toMatchObject({
      channel: 'C0001',
      thread_ts: '1699999999.000200',
    });
  });

  it('a retry from Slack looks in the thread first and does not post twice', async () => {
    const { server, app: built } = await app();
    slack.answer('conversations.replies', {
      answer: {
        kind: 'ok',
        fields: {
          messages: [
            { ts: '1700000000.000100', text: '<@U0BOT> hello' },
            {
              ts: '1700000001.000100',
              metadata: {
                event_type: MENTION_REPLY_EVENT_TYPE,
                event_payload: { event_id: 'EvM3' },
              },
            },
          ],
        },
      },
    });
    await signed(server, '/slack/events', mention('EvM3'), 'application/json')
      .set('X-Slack-Retry-Num', '1')
      .set('X-Slack-Retry-Reason', 'http_timeout')
      .expect(200);
    await eventually(() => slack.callsOf('conversations.replies').length === 1);
    const [replies] = slack.callsOf('conversations.replies');
    expect(replies!.args).toMatchObject({ channel: 'C0001', ts: '1700000000.000100' });
    await eventually(() => built.lifecycle.inFlight().work === 0);
    expect(slack.callsOf('chat.postMessage')).toEqual([]);
  });

  it('Slack’s rate limit in process: logged once with the method and wait, counted rate_limited', async () => {
    const { server, app: built, logs } = await app();
    slack.rateLimit('chat.postMessage', 1, 7);
    await signed(server, '/slack/events', mention('EvM4'), 'application/json').expect(200);
    await eventually(() => logs.some((line) => line.msg === 'slack handler rate limited'));
    expect(logs.filter((line) => line.msg === 'slack handler rate limited')).toEqual([
      expect.objectContaining({
        level: 'warn',
        id: 'EvM4',
        type: 'app_mention',
        attempt: 1,
        method: 'chat.postMessage',
        retryAfterSeconds: 7,
      }),
    ]);
    const metrics = await built.registry.metrics();
    const count = (outcome: string) =>
      metricValue(metrics, 'coffeebuddy_slack_requests_total', { kind: 'events', outcome });
    expect([count('rate_limited'), count('handler_error')]).toEqual([1, 0]);
  });

  it('adding a feature to the seat is the whole change: its subcommand and handler are served', async () => {
    const seen: string[] = [];
    const order: Feature = (handlers) => {
      handlers
        .addSubcommand('order', {
          description: 'order a coffee',
          run: (args, cmd) => `Ordered ${args} for <@${cmd.userId}>`,
        })
        .onEvent('reaction_added', (event, context) => {
          seen.push(`${event.reaction} ${context.eventId} ${context.teamId ?? ''}`);
        });
    };
    const { server } = await app({ slackHandlers: coffeeBuddyHandlers([...FEATURES, order]) });
    const form = (text: string) =>
      new URLSearchParams({ command: '/coffee', text, user_id: 'U1', team_id: 'T0001' }).toString();
    const FORM = 'application/x-www-form-urlencoded';
    const help = await signed(server, '/slack/commands', form('help'), FORM).expect(200);
    expect(help.body.text).toContain('`/coffee order`: order a coffee');
    const ordered = await signed(server, '/slack/commands', form('order flat white'), FORM);
    expect(ordered.body.text).toBe('Ordered flat white for <@U1>');
    const reaction = JSON.stringify({
      type: 'event_callback',
      team_id: 'T0001',
      event_id: 'EvR1',
      event: { type: 'reaction_added', reaction: 'coffee', item: { channel: 'C1', ts: '1.2' } },
    });
    await signed(server, '/slack/events', reaction, 'application/json').expect(200);
    await eventually(() => seen.length === 1);
    expect(seen).toEqual(['coffee EvR1 T0001']);
  });
});
