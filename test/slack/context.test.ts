import { Registry } from 'prom-client';
import { loadSettings } from '../../lib/config/settings';
import { createLogger } from '../../lib/logger';
import type { SlackClient } from '../../lib/slack/client';
import { handlerContext, type Delivery } from '../../lib/slack/context';
import { buildSlackClient } from '../../lib/slack/web-api';
import { FakeClient } from '../../testing/fakes';
import { startSlackApiStandIn, type SlackApiStandIn } from '../../testing/slack-api';

/** The handler context over the real Web API client and the Slack Web API stand-in. */
const TOKEN = 'xoxb-context-test-token';
let api: SlackApiStandIn;
let slack: SlackClient;
const lines: Record<string, unknown>[] = [];
const logger = createLogger('debug', (line) => lines.push(JSON.parse(line)));

beforeAll(async () => {
  api = await startSlackApiStandIn([TOKEN]);
  const settings = loadSettings({ SLACK_BOT_TOKEN: TOKEN, SLACK_API_URL: api.url });
  slack = buildSlackClient(settings, { vault: new FakeClient(), logger, registry: new Registry() });
});
afterAll(async () => {
  slack.close?.();
  await api.close();
});
afterEach(() => {
  api.reset();
  lines.length = 0;
});

const event = (payload: Record<string, unknown>, extra: Partial<Delivery> = {}): Delivery => ({
  eventId: 'Ev1',
  kind: 'events',
  type: 'app_mention',
  payload: { type: 'app_mention', ...payload },
  envelope: { team_id: 'T0001', enterprise_id: 'E0001' },
  attempt: 2,
  signal: new AbortController().signal,
  ...extra,
});

describe('handlerContext', () => {
  it('carries the delivery: ids, team, enterprise, attempt, Slack’s retry, the database', () => {
    const postgres = { query: () => Promise.reject(new Error('unused')) };
    const context = handlerContext(event({}, { retryNum: 1, retryReason: 'http_timeout' }), {
      slack,
      logger,
      postgres,
    });
    expect(context).toMatchObject({
      eventId: 'Ev1',
      type: 'app_mention',
      teamId: 'T0001',
      enterpriseId: 'E0001',
      attempt: 2,
      retryNum: 1,
      retryReason: 'http_timeout',
      postgres,
    });
    context.logger.info('handled', { extra: true });
    expect(lines).toEqual([
      expect.objectContaining({ msg: 'handled', id: 'Ev1', type: 'app_mention', attempt: 2 }),
    ]);
  });

  it('say posts in the event’s channel, in its thread when it has one, with the signal', async () => {
    const plain = handlerContext(event({ channel: 'C1', ts: '1.1' }), { slack, logger });
    await plain.say('hello');
    const threaded = handlerContext(event({ channel: 'C2', ts: '2.2', thread_ts: '2.0' }), {
      slack,
      logger,
    });
    await threaded.say({ text: 'in thread', unfurl_links: false });
    expect(api.callsOf('chat.postMessage').map((call) => call.args)).toEqual([
      { channel: 'C1', text: 'hello' },
      { channel: 'C2', thread_ts: '2.0', text: 'in thread', unfurl_links: 'false' },
    ]);
  });

  it('say on an interaction uses its channel and message thread; team from the payload', async () => {
    const context = handlerContext(
      {
        eventId: 'sha256:ab',
        kind: 'interactions',
        type: 'block_actions',
        payload: {
          type: 'block_actions',
          team: { id: 'T0002' },
          channel: { id: 'C3' },
          message: { ts: '3.3', thread_ts: '3.0' },
        },
        attempt: 1,
        signal: new AbortController().signal,
      },
      { slack, logger },
    );
    expect(context.teamId).toBe('T0002');
    await context.say('done');
    expect(api.callsOf('chat.postMessage')[0]!.args).toEqual({
      channel: 'C3',
      thread_ts: '3.0',
      text: 'done',
    });
  });

  it('say without a channel rejects, naming the type, and calls nothing', async () => {
    const context = handlerContext(event({}), { slack, logger });
    await expect(context.say('x')).rejects.toThrow('say: this app_mention names no channel');
    expect(api.calls).toEqual([]);
  });
});
