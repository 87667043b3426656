import type http from 'node:http';
import request from 'supertest';
import { coffeeBuddyHandlers } from '../functions/features';
import { HELP_ACTION_ID } from '../functions/features/mention';
import { STATUS_ACK } from '../functions/features/status';
import type { App } from '../functions/app';
import type { HandlerContext } from '../lib/slack/context';
import { SlackHandlers } from '../lib/slack/handlers';
import { signSlackRequest } from '../lib/slack/signature';
import { appHarness } from '../testing/app';
import { metricValue } from '../testing/metrics-text';
import { startSink, type Sink } from '../testing/sink';
import { startHooksStandIn, type HooksStandIn } from '../testing/slack-hooks';
import { eventually } from '../testing/tools';

/**
 * Commands and interactions that do work, in process (no K_SINK) through the production pipeline:
 * answers in place as Slack reads them, work after the ack with respond() to the response URL
 * stand-in (testing/slack-hooks.ts), which answers as Slack's hooks do.
 */
const SECRET = 'interactive-signing-secret';
const FORM = 'application/x-www-form-urlencoded';

let hooks: HooksStandIn;
let sink: Sink;
beforeAll(async () => {
  hooks = await startHooksStandIn();
});
afterAll(() => hooks.close());
beforeEach(async () => {
  sink = await startSink();
});
afterEach(async () => {
  hooks.reset();
  await sink.close();
});

const build = appHarness();
const harness = (handlers: SlackHandlers, env: NodeJS.ProcessEnv = {}) =>
  build({
    env: { SLACK_SIGNING_SECRET: SECRET, SLACK_RESPONSE_URL_PREFIX: hooks.prefix, ...env },
    slackHandlers: handlers,
  });

function signed(server: http.Server, path: string, body: string, secret = SECRET) {
  const timestamp = String(Math.floor(Date.now() / 1000));
  return request(server)
    .post(path)
    .set('Content-Type', FORM)
    .set('X-Slack-Request-Timestamp', timestamp)
    .set('X-Slack-Signature', signSlackRequest(secret, timestamp, body))
    .send(body);
}

const commandForm = (text: string, responseUrl: string) =>
  new URLSearchParams({
    command: '/coffee',
    text,
    user_id: 'U1',
    channel_id: 'C1',
    team_id: 'T0001',
    response_url: responseUrl,
    trigger_id: '1.2.3',
  }).toString();
const interactionForm = (payload: Record<string, unknown>) =>
  new URLSearchParams({ payload: JSON.stringify(payload) }).toString();

const slackCount = async (app: App, kind: string, outcome: string) =>
  metricValue(await app.registry.metrics(), 'coffeebuddy_slack_requests_total', { kind, outcome });
const respondCount = async (app: App, outcome: string) =>
  metricValue(await app.registry.metrics(), 'coffeebuddy_slack_api_calls_total', {
    method: 'response_url',
    outcome,
  });

describe('commands that do work', () => {
  it('/coffee status in process: "Checking…" at once, then one respond() with this process’s readiness', async () => {
    const { server, app, vault } = await harness(coffeeBuddyHandlers());
    vault.status = 'unavailable';
    vault.error = 'permission denied at secret/data/coffeebuddy/slack';
    const url = hooks.issue();
    const res = await signed(server, '/slack/commands', commandForm('status', url)).expect(200);
    expect(res.body).toEqual({ response_type: 'ephemeral', text: STATUS_ACK });
    await eventually(() => hooks.postsTo(url).length === 1);
    expect(hooks.postsTo(url)[0]!.body).toEqual({
      response_type: 'ephemeral',
      text: 'CoffeeBuddy is not ready.\n• ory: ok\n• slack: ok\n• vault: unavailable',
    });
    // Component names and states only: never an error's text.
    expect(JSON.stringify(hooks.posts)).not.toContain('permission denied');
    await eventually(() => app.lifecycle.inFlight().work === 0);
    expect(await respondCount(app, 'ok')).toBe(1);
  });

  it('answers with Block Kit in the channel, or with an empty ack, as the subcommand says', async () => {
    const blocks = [{ type: 'section', text: { type: 'mrkdwn', text: '*Coffee*' } }];
    const handlers = new SlackHandlers()
      .addSubcommand('menu', {
        description: 'x',
        run: () => ({ response_type: 'in_channel', text: 'Coffee', blocks }),
      })
      .addSubcommand('quiet', { description: 'x', run: () => undefined })
      .addSubcommand('blank', { description: 'x', run: () => ({}) });
    const { server } = await harness(handlers);
    const menu = await signed(server, '/slack/commands', commandForm('menu', hooks.issue()));
    expect(menu.body).toEqual({ response_type: 'in_channel', text: 'Coffee', blocks });
    for (const text of ['quiet', 'blank']) {
      const quiet = await signed(server, '/slack/commands', commandForm(text, hooks.issue()));
      expect([quiet.status, quiet.text]).toEqual([200, '']);
    }
  });

  it('answers text alone or blocks alone as ephemeral, and an empty text with the empty ack', async () => {
    const blocks = [{ type: 'section', text: { type: 'mrkdwn', text: '*Coffee*' } }];
    const handlers = new SlackHandlers()
      .addSubcommand('plain', { description: 'x', run: () => ({ text: 'Coffee' }) })
      .addSubcommand('cards', { description: 'x', run: () => ({ blocks }) })
      .addSubcommand('nothing', { description: 'x', run: () => '' });
    const { server } = await harness(handlers);
    const answer = (text: string) =>
      signed(server, '/slack/commands', commandForm(text, hooks.issue())).expect(200);
    expect((await answer('plain')).body).toEqual({ response_type: 'ephemeral', text: 'Coffee' });
    expect((await answer('cards')).body).toEqual({ response_type: 'ephemeral', blocks });
    expect((await answer('nothing')).text).toBe('');
  });

  it('work after the ack runs once with the command, its context and respond(); a 6th respond() is refused', async () => {
    const outcomes: string[] = [];
    let seen: { args: string; user: string; type: string; teamId?: string } | undefined;
    const handlers = new SlackHandlers().addSubcommand('brew', {
      description: 'x',
      later: async (args, command, context: HandlerContext) => {
        seen = { args, user: command.userId, type: context.type, teamId: context.teamId };
        for (let use = 1; use <= 6; use += 1) {
          await context.respond(`cup ${use}`).then(
            () => outcomes.push('sent'),
            (error: unknown) =>
              outcomes.push(error instanceof Error ? error.message : 'not an error'),
          );
        }
      },
    });
    const { server, app } = await harness(handlers);
    const url = hooks.issue();
    const res = await signed(server, '/slack/commands', commandForm('brew two cups', url));
    // No answer in place: the empty acknowledgement, the person sees what respond() posts.
    expect([res.status, res.text]).toEqual([200, '']);
    await eventually(() => outcomes.length === 6);
    expect(seen).toEqual({ args: 'two cups', user: 'U1', type: 'coffee', teamId: 'T0001' });
    expect(outcomes).toEqual([
      ...Array<string>(5).fill('sent'),
      'response_url refused: uses_spent',
    ]);
    expect(hooks.postsTo(url)).toHaveLength(5);
    expect([await respondCount(app, 'ok'), await respondCount(app, 'refused')]).toEqual([5, 1]);
  });

  it('with K_SINK, a command whose work is after the ack is published first: the sink failing, the person is told to run it again', async () => {
    let ran = 0;
    const handlers = new SlackHandlers()
      .addSubcommand('brew', {
        description: 'x',
        run: () => 'Brewing…',
        later: () => {
          ran += 1;
        },
      })
      .addSubcommand('now', { description: 'x', run: () => 'Now.' });
    const { server, app } = await harness(handlers, {
      K_SINK: sink.url,
      SLACK_PUBLISH_TIMEOUT_MS: '500',
    });
    const url = hooks.issue();
    const body = commandForm('brew', url);
    const published = await signed(server, '/slack/commands', body).expect(200);
    expect(published.body).toEqual({ response_type: 'ephemeral', text: 'Brewing…' });
    const [event] = sink.events();
    expect(event).toMatchObject({
      type: 'com.slack.command.coffee',
      source: 'https://slack.com/teams/T0001',
      datacontenttype: 'application/json',
    });
    expect(event!.id).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(event!.data).toMatchObject({ command: '/coffee', text: 'brew', response_url: url });
    // A command that needs nothing after the ack is not published: help, or one answered in place.
    await signed(server, '/slack/commands', commandForm('help', url)).expect(200);
    const now = await signed(server, '/slack/commands', commandForm('now', url)).expect(200);
    expect(now.body).toEqual({ response_type: 'ephemeral', text: 'Now.' });
    expect(sink.events()).toHaveLength(1);

    sink.answer = { kind: 'status', status: 503 };
    const failed = await signed(server, '/slack/commands', body).expect(200);
    expect(failed.body).toEqual({
      response_type: 'ephemeral',
      text: 'Sorry, CoffeeBuddy could not start that just now. Please run it again.',
    });
    expect(await slackCount(app, 'commands', 'publish_failed')).toBe(1);
    expect(ran).toBe(0);
  });

  it('with K_SINK, a command whose fields as JSON would pass SLACK_MAX_BODY_BYTES is refused 413, not published', async () => {
    const handlers = new SlackHandlers().addSubcommand('brew', {
      description: 'x',
      later: () => undefined,
    });
    const { server, app } = await harness(handlers, {
      K_SINK: sink.url,
      SLACK_MAX_BODY_BYTES: '4096',
    });
    // 3,600 bytes as a form; each %01 is \u0001 in JSON: 7,200 bytes.
    const body = `command=%2Fcoffee&text=brew+${'%01'.repeat(1200)}&team_id=T0001`;
    expect(body.length).toBeLessThan(4096);
    const res = await signed(server, '/slack/commands', body).expect(413);
    expect(res.body).toEqual({ error: 'payload too large' });
    expect(sink.received).toEqual([]);
    expect(await slackCount(app, 'commands', 'invalid_payload')).toBe(1);
  });

  it('with K_SINK, a command whose fields as JSON are exactly SLACK_MAX_BODY_BYTES is published', async () => {
    const handlers = new SlackHandlers().addSubcommand('brew', {
      description: 'x',
      later: () => undefined,
    });
    const body = `command=%2Fcoffee&text=brew+${'%01'.repeat(1200)}&team_id=T0001`;
    // The event's data: the form's fields as a JSON object, in their order.
    const size = Buffer.byteLength(JSON.stringify(Object.fromEntries(new URLSearchParams(body))));
    expect(size).toBeGreaterThan(body.length);
    const { server } = await harness(handlers, {
      K_SINK: sink.url,
      SLACK_MAX_BODY_BYTES: String(size),
    });
    await signed(server, '/slack/commands', body).expect(200);
    expect(sink.events()).toHaveLength(1);
    expect(Buffer.byteLength(JSON.stringify(sink.events()[0]!.data))).toBe(size);
  });

  it('in process, a command whose name cannot be an event type is logged with the type "command"', async () => {
    const handlers = new SlackHandlers('/café').addSubcommand('broken', {
      description: 'x',
      run: () => {
        throw new Error('broke');
      },
    });
    const { server, logs } = await harness(handlers);
    const body = commandForm('broken', hooks.issue()).replace('%2Fcoffee', '%2Fcaf%C3%A9');
    const res = await signed(server, '/slack/commands', body).expect(200);
    expect(res.body.text).toBe('Sorry, something went wrong.');
    expect(logs.filter((line) => line.msg === 'slack answer failed')).toEqual([
      expect.objectContaining({ kind: 'commands', type: 'command' }),
    ]);
  });

  it('in process, past SLACK_MAX_PENDING_WORK a command with work is refused with a message, not queued', async () => {
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const handlers = new SlackHandlers().addSubcommand('brew', {
      description: 'x',
      later: () => held,
    });
    const { server, app, logs } = await harness(handlers, { SLACK_MAX_PENDING_WORK: '1' });
    await signed(server, '/slack/commands', commandForm('brew', hooks.issue())).expect(200);
    const busy = await signed(server, '/slack/commands', commandForm('brew', hooks.issue()));
    expect(busy.body.text).toBe('CoffeeBuddy is busy right now. Please run it again in a moment.');
    expect(await slackCount(app, 'commands', 'overloaded')).toBe(1);
    expect(logs.filter((line) => line.msg === 'slack request refused')).toEqual([
      expect.objectContaining({ level: 'warn', kind: 'commands', outcome: 'overloaded' }),
    ]);
    release();
    await eventually(() => app.lifecycle.inFlight().work === 0);
  });
});

describe('interactions routed as Slack means them', () => {
  const recorded: string[] = [];
  afterEach(() => {
    recorded.length = 0;
  });
  const handlers = () =>
    new SlackHandlers()
      .onAction('approve', (action, payload, context) => {
        recorded.push(`approve ${String(action.block_id)} ${payload.type} ${context.eventId}`);
        return context.respond({ replace_original: true, text: 'Approved' });
      })
      .onAction('deny', () => {
        recorded.push('deny');
      })
      .onViewSubmission('order', {
        answer: (payload) => {
          const values = (payload.view as { state: { values: Record<string, unknown> } }).state
            .values;
          return 'size' in values
            ? undefined
            : { response_action: 'errors', errors: { size: 'Pick a size' } };
        },
        later: () => {
          recorded.push('order placed');
        },
      })
      .onViewSubmission('broken', {
        answer: () => {
          throw new Error('validation crashed');
        },
      })
      .onOptions('sizes', (payload) => ({
        options: ['small', 'large']
          .filter((size) => size.startsWith(String(payload.value)))
          .map((size) => ({ text: { type: 'plain_text', text: size }, value: size })),
      }));

  it('a button by its action_id, with its block_id; respond() answers the click', async () => {
    const { server, app } = await harness(handlers());
    const url = hooks.issue('actions');
    const res = await signed(
      server,
      '/slack/interactions',
      interactionForm({
        type: 'block_actions',
        team: { id: 'T0001' },
        response_url: url,
        actions: [{ action_id: 'approve', block_id: 'b7', type: 'button' }],
      }),
    );
    expect([res.status, res.text]).toEqual([200, '']);
    await eventually(() => hooks.postsTo(url).length === 1);
    expect(recorded).toEqual([
      expect.stringMatching(/^approve b7 block_actions sha256:[0-9a-f]{64}$/),
    ]);
    expect(hooks.postsTo(url)[0]!.body).toEqual({ replace_original: true, text: 'Approved' });
    expect(await slackCount(app, 'interactions', 'ok')).toBe(1);
  });

  it('an action_id nobody handles: acknowledged, counted unhandled, nothing runs', async () => {
    const { server, app } = await harness(handlers());
    const res = await signed(
      server,
      '/slack/interactions',
      interactionForm({ type: 'block_actions', actions: [{ action_id: 'mystery' }] }),
    );
    expect([res.status, res.text]).toEqual([200, '']);
    expect(await slackCount(app, 'interactions', 'unhandled')).toBe(1);
    expect(app.lifecycle.inFlight().work).toBe(0);
    expect(recorded).toEqual([]);
  });

  it('a view_submission answered in place with errors, returned to Slack; nothing runs after it', async () => {
    const { server } = await harness(handlers());
    const submit = (values: Record<string, unknown>) =>
      signed(
        server,
        '/slack/interactions',
        interactionForm({
          type: 'view_submission',
          view: { callback_id: 'order', state: { values } },
        }),
      );
    const refused = await submit({}).expect(200);
    expect(refused.body).toEqual({ response_action: 'errors', errors: { size: 'Pick a size' } });
    const accepted = await submit({ size: { s: { value: 'small' } } }).expect(200);
    expect(accepted.text).toBe('');
    await eventually(() => recorded.length === 1);
    expect(recorded).toEqual(['order placed']);
  });

  it('a view_submission whose answer fails: 503, so that the modal stays open, and counted', async () => {
    const { server, app, logs } = await harness(handlers());
    await signed(
      server,
      '/slack/interactions',
      interactionForm({ type: 'view_submission', view: { callback_id: 'broken' } }),
    ).expect(503);
    expect(await slackCount(app, 'interactions', 'handler_error')).toBe(1);
    expect(logs.filter((line) => line.msg === 'slack answer failed')).toEqual([
      expect.objectContaining({
        kind: 'interactions',
        type: 'view_submission',
        error: expect.objectContaining({ message: 'validation crashed' }),
      }),
    ]);
  });

  it('a block_suggestion served its options in place; one nobody serves gets none', async () => {
    const { server, app } = await harness(handlers());
    const suggest = (actionId: string) =>
      signed(
        server,
        '/slack/interactions',
        interactionForm({ type: 'block_suggestion', action_id: actionId, value: 'sm' }),
      ).expect(200);
    expect((await suggest('sizes')).body).toEqual({
      options: [{ text: { type: 'plain_text', text: 'small' }, value: 'small' }],
    });
    expect((await suggest('colours')).body).toEqual({ options: [] });
    expect(await slackCount(app, 'interactions', 'unhandled')).toBe(1);
  });

  it('a forged interaction is refused 401 before its payload is parsed or routed', async () => {
    const { server, app } = await harness(handlers());
    const body = interactionForm({ type: 'block_actions', actions: [{ action_id: 'deny' }] });
    await signed(server, '/slack/interactions', body, 'not-the-secret').expect(401);
    await signed(server, '/slack/interactions', 'payload=%7Bnot-json', 'not-the-secret').expect(
      401,
    );
    expect(await slackCount(app, 'interactions', 'bad_signature')).toBe(2);
    expect(await slackCount(app, 'interactions', 'invalid_payload')).toBe(0);
    expect(recorded).toEqual([]);
  });

  it('the mention’s help button in process: answered through respond() with the help text', async () => {
    const { server } = await harness(coffeeBuddyHandlers());
    const url = hooks.issue('actions');
    await signed(
      server,
      '/slack/interactions',
      interactionForm({
        type: 'block_actions',
        response_url: url,
        actions: [{ action_id: HELP_ACTION_ID, type: 'button' }],
      }),
    ).expect(200);
    await eventually(() => hooks.postsTo(url).length === 1);
    expect(hooks.postsTo(url)[0]!.body).toEqual({
      response_type: 'ephemeral',
      replace_original: false,
      text: coffeeBuddyHandlers().helpText(),
    });
  });
});
