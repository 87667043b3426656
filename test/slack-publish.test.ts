import crypto from 'node:crypto';
import type http from 'node:http';
import request from 'supertest';
import type { App } from '../functions/app';
import { SlackHandlers } from '../lib/slack/handlers';
import { signSlackRequest } from '../lib/slack/signature';
import { appHarness } from '../testing/app';
import { metricValue } from '../testing/metrics-text';
import { freePort } from '../testing/process';
import { startSink, type Sink } from '../testing/sink';
import { eventually } from '../testing/tools';

const SECRET = 'publish-signing-secret';
const NOW = 1_800_000_000;
const FORM = 'application/x-www-form-urlencoded';
const JSON_TYPE = 'application/json';
const OVERRIDES = '{"extensions":{"cluster":"dev1","partitionkey":"slack"}}';

const build = appHarness({ nowSeconds: () => NOW });

let sink: Sink;
beforeEach(async () => {
  sink = await startSink();
});
afterEach(() => sink.close());

/** An app publishing to the sink, with handlers that record what reaches them in process. */
async function publishing(env: NodeJS.ProcessEnv = {}) {
  const handled: unknown[] = [];
  const handlers = new SlackHandlers()
    .onEvent('app_mention', (event) => {
      handled.push(event);
    })
    .onAction('order', (_action, payload) => {
      handled.push(payload);
    })
    .onAction('cancel', (_action, payload) => {
      handled.push(payload);
    });
  const built = await build({
    env: {
      SLACK_SIGNING_SECRET: SECRET,
      K_SINK: sink.url,
      K_CE_OVERRIDES: OVERRIDES,
      SLACK_PUBLISH_TIMEOUT_MS: '200',
      ...env,
    },
    slackHandlers: handlers,
  });
  return { ...built, handled };
}

function post(server: http.Server, path: string, body: string, type: string, retry?: number) {
  const timestamp = String(NOW);
  let req = request(server)
    .post(path)
    .set('Content-Type', type)
    .set('X-Slack-Request-Timestamp', timestamp)
    .set('X-Slack-Signature', signSlackRequest(SECRET, timestamp, body));
  if (retry !== undefined) {
    req = req.set('X-Slack-Retry-Num', String(retry)).set('X-Slack-Retry-Reason', 'http_error');
  }
  return req.send(body);
}

const envelope = (id: string, type = 'app_mention') => ({
  token: 'verification-token',
  team_id: 'T0001',
  api_app_id: 'A0001',
  type: 'event_callback',
  event_id: id,
  event_time: NOW,
  event: { type, user: 'U1', text: 'coffee?', channel: 'C1' },
});
const interactionPayload = {
  type: 'block_actions',
  team: { id: 'T0002', domain: 'coffee' },
  user: { id: 'U2', team_id: 'T0002' },
  actions: [{ action_id: 'order', value: 'flat white' }],
};
const interactionBody = (payload: unknown) =>
  new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
const SLACK_MAX_BODY_BYTES = 65_536;
/**
 * An event_callback of exactly `bytes` bytes, padded with `1e20`s: numbers JSON.stringify would
 * write out in full (21 characters each).
 */
function largestEventBody(id: string, bytes: number): string {
  const head = JSON.stringify(envelope(id)).slice(0, -1) + ',"pad":[';
  const tail = ']}';
  const room = bytes - head.length - tail.length;
  const numbers = Array<string>(Math.floor((room + 1) / 5))
    .fill('1e20')
    .join(',');
  return `${head}${numbers}${' '.repeat(room - numbers.length)}${tail}`;
}
const sha256 = (text: string) => crypto.createHash('sha256').update(text).digest('hex');

async function metric(app: App, name: string, labels: Record<string, string>) {
  return metricValue(await app.registry.metrics(), name, labels);
}
const slackCount = (app: App, kind: string, outcome: string) =>
  metric(app, 'coffeebuddy_slack_requests_total', { kind, outcome });

describe('with K_SINK, an event_callback', () => {
  it('is published as a CloudEvent, and Slack acknowledged only after the sink answered', async () => {
    sink.answer = { kind: 'hold' };
    const { server, app, handled } = await publishing();
    const body = JSON.stringify(envelope('Ev0PV52K25'));
    let answered = false;
    const answer = post(server, '/slack/events', body, JSON_TYPE).then((res) => {
      answered = true;
      return res;
    });
    await eventually(() => sink.received.length === 1);
    // The sink has the event and has not answered: Slack has no answer either.
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(answered).toBe(false);
    sink.release(202);
    const res = await answer;
    expect([res.status, res.text]).toEqual([200, '']);

    const [event] = sink.events();
    expect(event).toMatchObject({
      specversion: '1.0',
      id: 'Ev0PV52K25',
      type: 'com.slack.event.app_mention',
      source: 'https://slack.com/teams/T0001',
      datacontenttype: 'application/json',
      cluster: 'dev1',
      partitionkey: 'slack',
    });
    expect(event?.data).toEqual(JSON.parse(body));
    expect(sink.received[0]).toMatchObject({ method: 'POST', path: '/coffeebuddy/coffeebuddy' });
    expect(sink.received[0]?.headers['ce-id']).toBe('Ev0PV52K25');
    // The worker runs the handlers: none ran here.
    expect(handled).toEqual([]);
    expect(await slackCount(app, 'events', 'ok')).toBe(1);
    expect(
      await metric(app, 'coffeebuddy_slack_publish_duration_seconds_count', { outcome: 'ok' }),
    ).toBe(1);
  });

  it('is published whether or not a handler is registered here', async () => {
    const { server } = await publishing();
    const body = JSON.stringify(envelope('EvNoHandler', 'reaction_added'));
    await post(server, '/slack/events', body, JSON_TYPE).expect(200);
    expect(sink.events().map((e) => e.type)).toEqual(['com.slack.event.reaction_added']);
  });

  it('once published, is acknowledged as retry_duplicate and not published again', async () => {
    const { server, app } = await publishing();
    const body = JSON.stringify(envelope('EvTwice'));
    await post(server, '/slack/events', body, JSON_TYPE).expect(200);
    const res = await post(server, '/slack/events', body, JSON_TYPE, 1).expect(200);
    expect(res.text).toBe('');
    expect(sink.received).toHaveLength(1);
    expect(await slackCount(app, 'events', 'retry_duplicate')).toBe(1);
  });

  it('carries Slack’s retry number and reason as extensions, keeping Slack’s event_id as its id', async () => {
    const { server } = await publishing();
    const body = JSON.stringify(envelope('EvRetried'));
    await post(server, '/slack/events', body, JSON_TYPE, 2).expect(200);
    const [event] = sink.events();
    expect(event).toMatchObject({
      id: 'EvRetried',
      slackretrynum: '2',
      slackretryreason: 'http_error',
    });
  });

  it('names no workspace it cannot tell: source unknown', async () => {
    const { server } = await publishing();
    const noTeam: Record<string, unknown> = envelope('EvNoTeam');
    delete noTeam.team_id;
    await post(server, '/slack/events', JSON.stringify(noTeam), JSON_TYPE).expect(200);
    expect(sink.events()[0]?.source).toBe('unknown');
  });

  it('publishes the verified body byte for byte: at the largest size, numbers that would grow', async () => {
    const { server } = await publishing();
    const body = largestEventBody('EvLargest', SLACK_MAX_BODY_BYTES);
    expect(Buffer.byteLength(body)).toBe(SLACK_MAX_BODY_BYTES);
    await post(server, '/slack/events', body, JSON_TYPE).expect(200);
    const [published] = sink.received;
    // Only the attributes, in headers, were added: the body is what Slack sent.
    expect(published!.body).toBe(body);
    expect(published!.headers['content-length']).toBe(String(SLACK_MAX_BODY_BYTES));
    expect(published!.headers['content-type']).toBe('application/json');
    // Parsed and written again it would have been more than four times as large.
    expect(JSON.stringify(JSON.parse(body)).length).toBeGreaterThan(4 * SLACK_MAX_BODY_BYTES);
  });
});

describe('with K_SINK, a sink that does not take the event', () => {
  /** Slack's delivery fails with 503 publish_failed; its retry is published again, then acked. */
  async function failsThenRetryIsPublished(app: App, server: http.Server, expected: number) {
    const body = JSON.stringify(envelope('EvRetry'));
    const failed = await post(server, '/slack/events', body, JSON_TYPE);
    expect([failed.status, failed.body]).toEqual([503, { error: 'temporarily unavailable' }]);
    expect(await slackCount(app, 'events', 'publish_failed')).toBe(1);
    expect(await slackCount(app, 'events', 'ok')).toBe(0);
    expect(
      await metric(app, 'coffeebuddy_slack_publish_duration_seconds_count', { outcome: 'failed' }),
    ).toBe(1);
    sink.answer = { kind: 'status', status: 202 };
    await post(server, '/slack/events', body, JSON_TYPE, 1).expect(200);
    expect(sink.received).toHaveLength(expected);
    expect(sink.events().at(-1)?.id).toBe('EvRetry');
    expect(await slackCount(app, 'events', 'ok')).toBe(1);
    expect(await slackCount(app, 'events', 'retry_duplicate')).toBe(0);
  }

  it.each([503, 500, 429, 400, 307])(
    'answering %i: Slack gets 503, and the retry is published again',
    async (status) => {
      sink.answer = { kind: 'status', status };
      const { server, app, logs } = await publishing();
      await failsThenRetryIsPublished(app, server, 2);
      const warnings = logs.filter((line) => line.msg === 'cloudevent not published');
      expect(warnings).toEqual([
        expect.objectContaining({
          level: 'warn',
          id: 'EvRetry',
          type: 'com.slack.event.app_mention',
          reason: `status ${status}`,
          status,
        }),
      ]);
      // Never the event's data nor the secret.
      expect(JSON.stringify(logs)).not.toContain('coffee?');
      expect(JSON.stringify(logs)).not.toContain(SECRET);
    },
  );

  it('hanging: Slack gets 503 at the publish timeout, and the retry is published again', async () => {
    sink.answer = { kind: 'hang' };
    const { server, app, logs } = await publishing();
    await failsThenRetryIsPublished(app, server, 2);
    expect(logs).toContainEqual(
      expect.objectContaining({ msg: 'cloudevent not published', reason: 'timeout after 200 ms' }),
    );
  });

  it('refusing the connection: Slack gets 503, and the retry is published again', async () => {
    const closed = `http://127.0.0.1:${await freePort()}/`;
    const { server, app, logs } = await publishing({ K_SINK: closed });
    const body = JSON.stringify(envelope('EvRefused'));
    await post(server, '/slack/events', body, JSON_TYPE).expect(503);
    expect(await slackCount(app, 'events', 'publish_failed')).toBe(1);
    expect(logs).toContainEqual(
      expect.objectContaining({ msg: 'cloudevent not published', reason: 'connection refused' }),
    );
    // The id was not remembered: the retry is published (here it fails again), not acked.
    await post(server, '/slack/events', body, JSON_TYPE, 1).expect(503);
    expect(await slackCount(app, 'events', 'publish_failed')).toBe(2);
    expect(await slackCount(app, 'events', 'retry_duplicate')).toBe(0);
  });

  it('fails an interaction the same way: 503 publish_failed', async () => {
    sink.answer = { kind: 'status', status: 500 };
    const { server, app } = await publishing();
    await post(server, '/slack/interactions', interactionBody(interactionPayload), FORM).expect(
      503,
    );
    expect(await slackCount(app, 'interactions', 'publish_failed')).toBe(1);
  });
});

describe('with K_SINK, an interaction', () => {
  it('is published with an id from its payload text: the same payload, the same id', async () => {
    const { server, app, handled } = await publishing();
    const body = interactionBody(interactionPayload);
    await post(server, '/slack/interactions', body, FORM).expect(200);
    await post(server, '/slack/interactions', body, FORM).expect(200);
    const events = sink.events();
    const id = `sha256:${sha256(JSON.stringify(interactionPayload))}`;
    expect(events.map((e) => e.id)).toEqual([id, id]);
    expect(events[0]).toMatchObject({
      specversion: '1.0',
      type: 'com.slack.interaction.block_actions',
      source: 'https://slack.com/teams/T0002',
      datacontenttype: 'application/json',
      // When Slack sent it: the response_url's 30 minutes run from it.
      time: new Date(NOW * 1000).toISOString(),
      cluster: 'dev1',
      partitionkey: 'slack',
    });
    expect(events[0]?.data).toEqual(interactionPayload);
    expect(handled).toEqual([]);
    expect(await slackCount(app, 'interactions', 'ok')).toBe(2);
  });

  it('hashes the payload text as Slack sent it, not as parsed and written again', async () => {
    const { server } = await publishing();
    const text =
      '{ "type": "block_actions",\n  "team": { "id": "T0002" }, "actions": [{"action_id":"order"}] }';
    const body = new URLSearchParams({ payload: text }).toString();
    await post(server, '/slack/interactions', body, FORM).expect(200);
    expect(sink.events()[0]?.id).toBe(`sha256:${sha256(text)}`);
    // And publishes that text itself as the data.
    expect(sink.received[0]?.body).toBe(text);
  });

  it('gets another id when its payload differs', async () => {
    const { server } = await publishing();
    const other = { ...interactionPayload, actions: [{ action_id: 'cancel' }] };
    await post(server, '/slack/interactions', interactionBody(interactionPayload), FORM);
    await post(server, '/slack/interactions', interactionBody(other), FORM).expect(200);
    const [first, second] = sink.events();
    expect(first?.id).not.toBe(second?.id);
  });

  it('takes its source from the user’s team when the payload has no team', async () => {
    const { server } = await publishing();
    const payload: Record<string, unknown> = { ...interactionPayload };
    delete payload.team;
    await post(server, '/slack/interactions', interactionBody(payload), FORM).expect(200);
    expect(sink.events()[0]?.source).toBe('https://slack.com/teams/T0002');
  });
});

describe('with K_SINK, what is answered in place', () => {
  it('never publishes url_verification, ssl_check or a slash command', async () => {
    const { server } = await publishing();
    const challenge = JSON.stringify({ type: 'url_verification', challenge: 'c-1' });
    const verified = await post(server, '/slack/events', challenge, JSON_TYPE).expect(200);
    expect(verified.body).toEqual({ challenge: 'c-1' });
    await request(server)
      .post('/slack/commands')
      .set('Content-Type', FORM)
      .send('ssl_check=1&token=x')
      .expect(200);
    const command = new URLSearchParams({ command: '/coffee', text: 'help' }).toString();
    const answered = await post(server, '/slack/commands', command, FORM).expect(200);
    expect(answered.body.text).toContain('CoffeeBuddy can do this');
    expect(sink.received).toEqual([]);
  });

  it('publishes nothing unverified or unreadable', async () => {
    const { server } = await publishing();
    await request(server)
      .post('/slack/events')
      .set('Content-Type', JSON_TYPE)
      .send(JSON.stringify(envelope('EvForged')))
      .expect(401);
    await post(
      server,
      '/slack/events',
      JSON.stringify({ type: 'event_callback' }),
      JSON_TYPE,
    ).expect(400);
    await post(
      server,
      '/slack/events',
      JSON.stringify(envelope('EvOddType', 'app mention\n')),
      JSON_TYPE,
    ).expect(400);
    expect(sink.received).toEqual([]);
  });
});

describe('without K_SINK', () => {
  it('publishes nothing and runs the handlers in process, as before', async () => {
    const { server, handled, app } = await publishing({ K_SINK: '', K_CE_OVERRIDES: '' });
    await post(server, '/slack/events', JSON.stringify(envelope('EvLocal')), JSON_TYPE).expect(200);
    await post(server, '/slack/interactions', interactionBody(interactionPayload), FORM).expect(
      200,
    );
    await eventually(() => handled.length === 2);
    expect(sink.received).toEqual([]);
    // The publish histogram is there, at 0, for dashboards; nothing was observed.
    expect(
      await metric(app, 'coffeebuddy_slack_publish_duration_seconds_count', { outcome: 'ok' }),
    ).toBe(0);
  });
});

describe('the drain with K_SINK', () => {
  it('waits for a publish in flight, then closes the publisher’s connections', async () => {
    sink.answer = { kind: 'hold' };
    const { server, shutdown, exits, logs } = await publishing({
      SLACK_PUBLISH_TIMEOUT_MS: '2000',
    });
    const answer = post(server, '/slack/events', JSON.stringify(envelope('EvDrain')), JSON_TYPE);
    const sent = answer.then((res) => res);
    await eventually(() => sink.received.length === 1);
    shutdown.onSignal('SIGTERM');
    sink.release(202);
    expect((await sent).status).toBe(200);
    await eventually(() => exits.length > 0);
    expect(exits).toEqual([0]);
    expect(logs).toContainEqual(expect.objectContaining({ msg: 'drain finished', drained: true }));
    await eventually(() => sink.openConnections === 0);
  });
});
