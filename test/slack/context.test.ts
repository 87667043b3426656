import { Registry } from 'prom-client';
import { loadSettings } from '../../lib/config/settings';
import { componentHealth } from '../../lib/health';
import { createLogger } from '../../lib/logger';
import { ReadinessChecker } from '../../lib/readiness';
import { createSlackApiMetrics } from '../../lib/slack/api-metrics';
import type { SlackClient } from '../../lib/slack/client';
import {
  handlerContext,
  retryNumOf,
  retryReasonOf,
  type ContextDependencies,
  type Delivery,
} from '../../lib/slack/context';
import { ResponseUrls, SlackRespondRefusedError } from '../../lib/slack/respond';
import { buildSlackClient } from '../../lib/slack/web-api';
import { FakeClient } from '../../testing/fakes';
import { startSlackApiStandIn, type SlackApiStandIn } from '../../testing/slack-api';
import { startHooksStandIn, type HooksStandIn } from '../../testing/slack-hooks';

/** The handler context over the real Web API client and the Slack Web API stand-in. */
const TOKEN = 'xoxb-context-test-token';
let api: SlackApiStandIn;
let hooks: HooksStandIn;
let slack: SlackClient;
let responseUrls: ResponseUrls;
let deps: ContextDependencies;
const lines: Record<string, unknown>[] = [];
const logger = createLogger('debug', (line) => lines.push(JSON.parse(line)));
/** Two components the context reports: one fine, one failing with an error text of its own. */
const vault = new FakeClient();
const postgresHealth = {
  healthCheck: () => Promise.resolve(componentHealth(3, 'password authentication failed')),
};

beforeAll(async () => {
  api = await startSlackApiStandIn([TOKEN]);
  hooks = await startHooksStandIn();
  const settings = loadSettings({ SLACK_BOT_TOKEN: TOKEN, SLACK_API_URL: api.url });
  const metrics = createSlackApiMetrics(new Registry());
  slack = buildSlackClient(settings, { vault: new FakeClient(), logger, metrics });
  responseUrls = new ResponseUrls({ prefix: hooks.prefix, timeoutMs: 2000, logger, metrics });
  const checker = new ReadinessChecker({
    components: { vault, postgres: postgresHealth },
    ttlMs: 0,
    timeoutMs: 1000,
  });
  deps = { slack, logger, responseUrls, readiness: () => checker.check() };
});
afterAll(async () => {
  slack.close?.();
  responseUrls.close();
  await Promise.all([api.close(), hooks.close()]);
});
afterEach(() => {
  api.reset();
  hooks.reset();
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
      ...deps,
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
    const plain = handlerContext(event({ channel: 'C1', ts: '1.1' }), deps);
    await plain.say('hello');
    const threaded = handlerContext(event({ channel: 'C2', ts: '2.2', thread_ts: '2.0' }), deps);
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
      deps,
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
    const context = handlerContext(event({}), deps);
    await expect(context.say('x')).rejects.toThrow('say: this app_mention names no channel');
    expect(api.calls).toEqual([]);
  });
});

const command = (form: Record<string, unknown>, issuedAt?: number): Delivery => ({
  eventId: 'sha256:cd',
  kind: 'commands',
  type: 'coffee',
  payload: { command: '/coffee', text: 'status', ...form },
  attempt: 1,
  issuedAt,
  signal: new AbortController().signal,
});

describe('handlerContext of a command', () => {
  it('has the form’s team and enterprise; say posts in its channel', async () => {
    const context = handlerContext(
      command({ team_id: 'T0003', enterprise_id: 'E0003', channel_id: 'C4' }),
      deps,
    );
    expect([context.teamId, context.enterpriseId, context.type]).toEqual([
      'T0003',
      'E0003',
      'coffee',
    ]);
    await context.say('hello');
    expect(api.callsOf('chat.postMessage')[0]!.args).toEqual({ channel: 'C4', text: 'hello' });
  });

  it('respond posts to the command’s response_url, within its budget from when Slack sent it', async () => {
    const url = hooks.issue();
    const context = handlerContext(command({ response_url: url }, Date.now()), deps);
    await context.respond('Checking…');
    expect(hooks.postsTo(url).map((post) => post.body)).toEqual([{ text: 'Checking…' }]);
    const old = Date.now() - 31 * 60_000;
    const late = handlerContext(command({ response_url: hooks.issue() }, old), deps);
    await expect(late.respond('late')).rejects.toEqual(new SlackRespondRefusedError('expired'));
  });
});

describe('respond and readiness', () => {
  it('respond uses an interaction’s response_url, else a modal’s first; an event has none', async () => {
    const action = hooks.issue('actions');
    const modal = hooks.issue('actions');
    const interaction = (payload: Record<string, unknown>): Delivery => ({
      eventId: 'sha256:ef',
      kind: 'interactions',
      type: String(payload.type),
      payload,
      attempt: 1,
      signal: new AbortController().signal,
    });
    await handlerContext(
      interaction({ type: 'block_actions', response_url: action }),
      deps,
    ).respond('clicked');
    await handlerContext(
      interaction({ type: 'view_submission', response_urls: [{ response_url: modal }] }),
      deps,
    ).respond({ text: 'submitted', response_type: 'in_channel' });
    expect(hooks.postsTo(action).map((post) => post.body)).toEqual([{ text: 'clicked' }]);
    expect(hooks.postsTo(modal).map((post) => post.body)).toEqual([
      { text: 'submitted', response_type: 'in_channel' },
    ]);
    const none = handlerContext(interaction({ type: 'shortcut' }), deps);
    await expect(none.respond('x')).rejects.toThrow('respond: this shortcut has no response_url');
    await expect(handlerContext(event({}), deps).respond('x')).rejects.toThrow(
      'respond: this app_mention has no response_url',
    );
    expect(hooks.posts).toHaveLength(2);
  });

  it('readiness reports each component’s state and never its error text', async () => {
    const context = handlerContext(event({}), deps);
    expect(await context.readiness()).toEqual({
      ready: false,
      components: { vault: 'ok', postgres: 'unavailable' },
    });
  });
});

describe('Slack’s retry headers, as the context takes them', () => {
  it('a retry number is 1 to 3 digits, a reason short snake_case words; anything else is dropped', () => {
    expect([retryNumOf('1'), retryNumOf('999'), retryNumOf(undefined)]).toEqual([
      1,
      999,
      undefined,
    ]);
    for (const bad of ['', '1000', 'x1', '1x', '-1', '1.5'])
      expect(retryNumOf(bad)).toBeUndefined();
    expect(retryReasonOf('http_timeout')).toBe('http_timeout');
    expect(retryReasonOf('a'.repeat(32))).toBe('a'.repeat(32));
    for (const bad of ['', 'HTTP', 'x y', 'a'.repeat(33), 'http_timeout\n', '#http']) {
      expect(retryReasonOf(bad)).toBeUndefined();
    }
  });
});

describe('where a delivery is from and where say posts', () => {
  const delivery = (kind: Delivery['kind'], payload: Record<string, unknown>): Delivery => ({
    eventId: 'x',
    kind,
    type: typeof payload.type === 'string' ? payload.type : 'coffee',
    payload,
    attempt: 1,
    signal: new AbortController().signal,
  });

  it('an event about an item posts in the item’s channel; an event has no response_url', async () => {
    const reaction = handlerContext(
      delivery('events', {
        type: 'reaction_added',
        item: { channel: 'C9' },
        response_url: hooks.issue(),
      }),
      deps,
    );
    await reaction.say('noted');
    expect(api.callsOf('chat.postMessage')[0]!.args).toEqual({ channel: 'C9', text: 'noted' });
    await expect(reaction.respond('x')).rejects.toThrow('has no response_url');
    expect(hooks.posts).toEqual([]);
  });

  it('an interaction from a message container: its channel and thread; the user’s team; the enterprise', async () => {
    const context = handlerContext(
      delivery('interactions', {
        type: 'block_actions',
        user: { id: 'U1', team_id: 'T0005' },
        enterprise: { id: 'E0005' },
        container: { channel_id: 'C5', thread_ts: '5.0' },
      }),
      deps,
    );
    expect([context.teamId, context.enterpriseId]).toEqual(['T0005', 'E0005']);
    await context.say('here');
    expect(api.callsOf('chat.postMessage')[0]!.args).toEqual({
      channel: 'C5',
      thread_ts: '5.0',
      text: 'here',
    });
  });

  it('an interaction outside Enterprise Grid: Slack’s `enterprise: null` and `channel: null` are none', async () => {
    const context = handlerContext(
      delivery('interactions', {
        type: 'block_actions',
        team: { id: 'T0007' },
        enterprise: null,
        channel: null,
        message: null,
        container: { type: 'view', channel_id: 'C7' },
      }),
      deps,
    );
    expect([context.teamId, context.enterpriseId]).toEqual(['T0007', undefined]);
    await context.say('from a modal');
    expect(api.callsOf('chat.postMessage')[0]!.args).toEqual({
      channel: 'C7',
      text: 'from a modal',
    });
  });

  it('an empty field is none: a form’s empty enterprise_id and channel_id', async () => {
    const context = handlerContext(
      delivery('commands', { team_id: 'T0008', enterprise_id: '', channel_id: '' }),
      deps,
    );
    expect([context.teamId, context.enterpriseId]).toEqual(['T0008', undefined]);
    await expect(context.say('x')).rejects.toThrow('say: this coffee names no channel');
    expect(api.calls).toEqual([]);
  });

  it('say gives up with the delivery’s signal', async () => {
    const controller = new AbortController();
    const context = handlerContext(
      { ...delivery('commands', { channel_id: 'C6' }), signal: controller.signal },
      deps,
    );
    api.answer('chat.postMessage', { answer: { kind: 'ok' }, delayMs: 2000, times: 1 });
    const said = context.say('slow');
    controller.abort();
    await expect(said).rejects.toMatchObject({ name: 'SlackNetworkError' });
  });
});
