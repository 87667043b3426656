import { CloudEvent, HTTP } from 'cloudevents';
import request from 'supertest';
import { appHarness } from '../testing/app';
import { metricValue } from '../testing/metrics-text';
import { APP_PASSWORD, migratedCluster, itWithPostgres } from '../testing/postgres';
import { serveFunction } from '../testing/server';
import { eventually, findCommand, promtoolCheckMetrics } from '../testing/tools';
import { SlackHandlers } from '../lib/slack/handlers';
import { signSlackRequest } from '../lib/slack/signature';
import { startSink } from '../testing/sink';
import { startSlackApiStandIn } from '../testing/slack-api';

/**
 * The slackWorker and slackDeadLetter functions behind the image's pipeline (and alone under
 * functions-framework), on a real PostgreSQL with the repository's migrations, fed CloudEvents
 * made by the cloudevents SDK.
 */

const cluster = migratedCluster(['slack_work']);
const SOURCE = 'https://slack.com/teams/T0001';
const harness = appHarness({ env: { READINESS_CACHE_TTL_MS: '0' } });

function workerEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    READINESS_CACHE_TTL_MS: '0',
    SLACK_HANDLER_TIMEOUT_MS: '300',
    SLACK_WORK_LEASE_MS: '1300',
    ...cluster()!.env({ PGPASSWORD: APP_PASSWORD }),
    ...extra,
  };
}

/** A worker behind the image's pipeline, on the test cluster. */
const workerApp = (slackHandlers?: SlackHandlers, extra: NodeJS.ProcessEnv = {}) =>
  harness({
    target: 'slackWorker',
    ...(slackHandlers === undefined ? {} : { slackHandlers }),
    env: workerEnv(extra),
  });

/** A Slack event as the ingress publishes it. */
function slackEvent(id: string, text = id, slackType = 'app_mention'): CloudEvent<unknown> {
  return new CloudEvent({
    id,
    source: SOURCE,
    type: `com.slack.event.${slackType}`,
    datacontenttype: 'application/json',
    data: {
      type: 'event_callback',
      event_id: id,
      team_id: 'T0001',
      event: { type: slackType, text },
    },
  });
}

type Answer = { status: number; text: string };

/** POSTs an event in binary mode (as Knative delivers) or structured mode. */
async function deliver(
  server: Parameters<typeof request>[0],
  event: CloudEvent<unknown>,
  mode: 'binary' | 'structured' = 'binary',
): Promise<Answer> {
  const message = mode === 'binary' ? HTTP.binary(event) : HTTP.structured(event);
  const res = await request(server)
    .post('/')
    .set(message.headers as Record<string, string>)
    .send(message.body as string);
  return { status: res.status, text: res.text };
}

function rows(): Promise<Record<string, unknown>[]> {
  return cluster()!.admin(
    'SELECT id, type, state, attempts, claimed_by, last_error, error_code, error_dest FROM slack_work ORDER BY id',
    'coffeebuddy',
  );
}

async function workCount(server: Parameters<typeof request>[0], outcome: string, kind = 'events') {
  const text = (await request(server).get('/metrics').expect(200)).text;
  return metricValue(text, 'coffeebuddy_slack_work_total', { kind, outcome });
}

/** Handlers that record what they ran. */
function recording(behaviour: (text: string) => void | Promise<void> = () => undefined) {
  const ran: string[] = [];
  const handlers = new SlackHandlers().onEvent('app_mention', async (event) => {
    await behaviour(event.text);
    ran.push(event.text);
  });
  return { handlers, ran };
}

/** A promise held open until the test says: a handler waits on it at a known point. */
function gate(): { open: () => void; opened: Promise<void> } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { open, opened };
}

/** Rows another worker holds: its live lease taken over, as after this worker's lease ended. */
function takeOver(ids: readonly string[]): Promise<unknown> {
  return cluster()!.admin(
    `UPDATE slack_work SET claimed_by = 'other', lease_until = now() + interval '1 hour'
      WHERE id IN (${ids.map((id) => `'${id}'`).join(', ')})`,
    'coffeebuddy',
  );
}

describe('from the ingress to the worker: what Slack was acknowledged, the worker takes', () => {
  const SECRET = 'end-to-end-secret';
  const SLACK_MAX_BODY_BYTES = 65_536;
  /** Exactly `bytes` bytes of JSON padded with `1e20`s, which JSON.stringify writes out in full. */
  const padded = (head: string, tail: string, bytes: number) => {
    const room = bytes - head.length - tail.length;
    const numbers = Array<string>(Math.floor((room + 1) / 5))
      .fill('1e20')
      .join(',');
    return `${head}${numbers}${' '.repeat(room - numbers.length)}${tail}`;
  };

  itWithPostgres(
    'the largest event and interaction the ingress accepts pass through the worker, each run once',
    async () => {
      const sink = await startSink();
      try {
        const got: { type: string }[] = [];
        const handlers = new SlackHandlers()
          .onEvent('app_mention', (event) => {
            got.push(event);
          })
          .onAction('big', (_action, payload) => {
            got.push({ ...payload, type: payload.type });
          });
        const ingress = await harness({
          target: 'coffeebuddy',
          env: { SLACK_SIGNING_SECRET: SECRET, K_SINK: sink.url },
          // The ingress publishes what the seat it serves handles: the same handlers as the worker.
          slackHandlers: handlers,
        });
        const worker = await workerApp(handlers);

        const event = padded(
          '{"type":"event_callback","team_id":"T0001","event_id":"EvBig","event":{"type":"app_mention","text":"big","pad":[',
          ']}}',
          SLACK_MAX_BODY_BYTES,
        );
        // The form's payload field, its commas %2C-encoded, at the same limit.
        const head =
          'payload=' +
          encodeURIComponent('{"type":"block_actions","actions":[{"action_id":"big"}],"pad":[');
        const tail = encodeURIComponent(']}');
        const count = Math.floor((SLACK_MAX_BODY_BYTES - head.length - tail.length + 3) / 7);
        const form = `${head}${Array<string>(count).fill('1e20').join('%2C')}${tail}`;
        const interaction = `${form}${'%20'.repeat((SLACK_MAX_BODY_BYTES - form.length) / 3)}`;
        for (const [path, type, body] of [
          ['/slack/events', 'application/json', event],
          ['/slack/interactions', 'application/x-www-form-urlencoded', interaction],
        ] as const) {
          const timestamp = String(Math.floor(Date.now() / 1000));
          const res = await request(ingress.server)
            .post(path)
            .set('Content-Type', type)
            .set('X-Slack-Request-Timestamp', timestamp)
            .set('X-Slack-Signature', signSlackRequest(SECRET, timestamp, body))
            .send(body);
          expect([path, res.status]).toEqual([path, 200]);
        }
        expect(Buffer.byteLength(event)).toBe(SLACK_MAX_BODY_BYTES);
        expect(interaction.length).toBeGreaterThan(SLACK_MAX_BODY_BYTES - 3);

        // What the Broker would deliver: the published request as it was.
        for (const published of sink.received) {
          const res = await request(worker.server)
            .post('/')
            .set(published.headers as Record<string, string>)
            .send(published.body);
          expect(res.status).toBe(204);
          // Had the ingress parsed and written it again, it would not have fit the worker's limit.
          expect(JSON.stringify(JSON.parse(published.body)).length).toBeGreaterThan(
            SLACK_MAX_BODY_BYTES + 16 * 1024,
          );
        }
        expect(got.map((input) => input.type)).toEqual(['app_mention', 'block_actions']);
        expect(await workCount(worker.server, 'done')).toBe(1);
        expect(await workCount(worker.server, 'done', 'interactions')).toBe(1);
      } finally {
        await sink.close();
      }
    },
  );
});

describe('slackWorker behind the image pipeline', () => {
  itWithPostgres(
    'runs an event once: 204 done, then 204 duplicate; binary and structured',
    async () => {
      const { handlers, ran } = recording();
      const { server } = await workerApp(handlers);
      const first = await deliver(server, slackEvent('Ev1'));
      expect(first).toEqual({ status: 204, text: '' });
      expect(await deliver(server, slackEvent('Ev1'), 'structured')).toEqual({
        status: 204,
        text: '',
      });
      expect(await deliver(server, slackEvent('Ev2'), 'structured')).toEqual({
        status: 204,
        text: '',
      });
      expect(ran).toEqual(['Ev1', 'Ev2']);
      expect(await rows()).toEqual([
        expect.objectContaining({ id: 'Ev1', state: 'done', attempts: 1, claimed_by: null }),
        expect.objectContaining({ id: 'Ev2', state: 'done', attempts: 1 }),
      ]);
      expect(await workCount(server, 'done')).toBe(2);
      expect(await workCount(server, 'duplicate')).toBe(1);
    },
  );

  itWithPostgres('an interaction runs its handlers with the payload', async () => {
    const got: Record<string, unknown>[] = [];
    const handlers = new SlackHandlers().onAction('a', (_action, payload) => {
      got.push(payload);
    });
    const { server } = await workerApp(handlers);
    const payload = { type: 'block_actions', team: { id: 'T0001' }, actions: [{ action_id: 'a' }] };
    const event = new CloudEvent({
      id: 'sha256:abc',
      source: SOURCE,
      type: 'com.slack.interaction.block_actions',
      datacontenttype: 'application/json',
      data: payload,
    });
    expect((await deliver(server, event)).status).toBe(204);
    expect(got).toEqual([payload]);
    expect(await workCount(server, 'done', 'interactions')).toBe(1);
  });

  itWithPostgres(
    'a command runs its subcommand’s work once, with the command read from the data and the request’s time',
    async () => {
      const got: string[] = [];
      const handlers = new SlackHandlers().addSubcommand('brew', {
        description: 'x',
        run: () => 'never in the worker',
        later: async (args, command, context) => {
          if (args === 'late') await context.respond('too late?');
          got.push(`${args} ${command.userId} ${context.type} ${context.teamId ?? ''}`);
        },
      });
      const { server } = await workerApp(handlers);
      const command = (
        data: Record<string, string>,
        type = 'com.slack.command.coffee',
        { id = 'sha256:c0ffee', time = new Date() } = {},
      ) =>
        new CloudEvent({
          id,
          source: SOURCE,
          type,
          time: time.toISOString(),
          datacontenttype: 'application/json',
          data,
        });
      const data = { command: '/coffee', text: 'brew a pot', user_id: 'U7', team_id: 'T0001' };
      expect((await deliver(server, command(data))).status).toBe(204);
      expect((await deliver(server, command(data))).status).toBe(204);
      expect(got).toEqual(['a pot U7 coffee T0001']);
      expect(await workCount(server, 'done', 'commands')).toBe(1);
      expect(await workCount(server, 'duplicate', 'commands')).toBe(1);
      // A command whose data names another command than its type is not taken.
      const other = await deliver(server, command({ ...data, command: '/tea' }));
      expect(other).toEqual({
        status: 400,
        text: '{"error":"data is not a command of this type"}',
      });
      expect(await workCount(server, 'invalid', 'commands')).toBe(1);
    },
  );

  itWithPostgres(
    'a handler that throws: 500, logged and released with its message (no secret), run again by the retry',
    async () => {
      let fail = true;
      const { handlers, ran } = recording(() => {
        if (fail) throw new TypeError(`cannot order: password ${APP_PASSWORD} refused`);
      });
      const { server, logs } = await workerApp(handlers);
      const failed = await deliver(server, slackEvent('Ev3'));
      expect(failed.status).toBe(500);
      expect(await rows()).toEqual([
        expect.objectContaining({
          state: 'released',
          attempts: 1,
          last_error: 'TypeError: cannot order: password [redacted] refused',
          claimed_by: null,
        }),
      ]);
      expect(JSON.stringify(logs)).not.toContain(APP_PASSWORD);
      const failure = logs.filter((line) => line.msg === 'slack handler failed');
      expect(failure).toEqual([
        expect.objectContaining({
          level: 'error',
          id: 'Ev3',
          type: 'app_mention',
          attempt: 1,
          error: {
            name: 'TypeError',
            message: 'cannot order: password [redacted] refused',
            stack: expect.arrayContaining([expect.stringContaining('slack-worker.test.ts')]),
          },
        }),
      ]);
      expect((failure[0]!.error as { stack: string[] }).stack.length).toBeLessThanOrEqual(5);
      fail = false;
      expect((await deliver(server, slackEvent('Ev3'))).status).toBe(204);
      expect(ran).toEqual(['Ev3']);
      expect(await rows()).toEqual([expect.objectContaining({ state: 'done', attempts: 2 })]);
      expect(await workCount(server, 'failed')).toBe(1);
      const metrics = (await request(server).get('/metrics')).text;
      expect(
        metricValue(metrics, 'coffeebuddy_slack_handler_duration_seconds_count', {
          kind: 'events',
          outcome: 'failed',
        }),
      ).toBe(1);
      expect(
        metricValue(metrics, 'coffeebuddy_slack_handler_duration_seconds_count', {
          kind: 'events',
          outcome: 'done',
        }),
      ).toBe(1);
    },
  );

  itWithPostgres('a handler past SLACK_HANDLER_TIMEOUT_MS: 500, released as timeout', async () => {
    const { handlers } = recording(() => new Promise((resolve) => setTimeout(resolve, 700)));
    const { server, app } = await workerApp(handlers);
    expect((await deliver(server, slackEvent('Ev4'))).status).toBe(500);
    expect(await rows()).toEqual([
      expect.objectContaining({ state: 'released', last_error: 'timeout' }),
    ]);
    // The handler still runs: the drain waits for it.
    expect(app.lifecycle.inFlight().work).toBe(1);
    await app.lifecycle.idle(2000);
  });

  itWithPostgres(
    'the mention feature rate limited by Slack: 429 with Retry-After, released uncounted as a failure; posted once on the retry',
    async () => {
      const token = 'xoxb-worker-rate-limit-token';
      const slack = await startSlackApiStandIn([token]);
      try {
        // The seat's handlers: the app is built with none of the test's own.
        const { server, logs } = await workerApp(undefined, {
          SLACK_BOT_TOKEN: token,
          SLACK_API_URL: slack.url,
          // Not a test of the deadline: the first call loads Slack's WebClient, which a loaded
          // machine can take longer than this file's 300 ms to do.
          SLACK_HANDLER_TIMEOUT_MS: '10000',
          SLACK_WORK_LEASE_MS: '11000',
        });
        slack.rateLimit('chat.postMessage', 1, 7);
        const event = new CloudEvent({
          id: 'EvRate1',
          source: SOURCE,
          type: 'com.slack.event.app_mention',
          datacontenttype: 'application/json',
          data: {
            type: 'event_callback',
            event_id: 'EvRate1',
            team_id: 'T0001',
            event: { type: 'app_mention', channel: 'C9', ts: '1700000000.000900', text: 'hi' },
          },
        });
        const message = HTTP.binary(event);
        const limited = await request(server)
          .post('/')
          .set(message.headers as Record<string, string>)
          .send(message.body as string);
        expect(limited.status).toBe(429);
        expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(7);
        expect(await rows()).toEqual([
          expect.objectContaining({
            state: 'released',
            attempts: 1,
            last_error: 'SlackRateLimitedError: chat.postMessage rate limited: retry after 7 s',
          }),
        ]);
        expect(await workCount(server, 'rate_limited')).toBe(1);
        expect(await workCount(server, 'failed')).toBe(0);
        expect(logs.filter((line) => line.msg === 'slack handler rate limited')).toEqual([
          expect.objectContaining({ level: 'warn', id: 'EvRate1', retryAfterSeconds: 7 }),
        ]);
        expect(logs.some((line) => line.msg === 'slack handler failed')).toBe(false);

        // Knative's retry after the wait: attempt 2 looks in the thread, finds nothing, posts.
        expect((await deliver(server, event)).status).toBe(204);
        const posted = slack.callsOf('chat.postMessage').filter((call) => call.status === 200);
        expect(posted).toHaveLength(1);
        expect(posted[0]!.args).toMatchObject({ channel: 'C9', thread_ts: '1700000000.000900' });
        expect(slack.callsOf('conversations.replies')).toHaveLength(1);
        expect(await rows()).toEqual([expect.objectContaining({ state: 'done', attempts: 2 })]);
      } finally {
        await slack.close();
      }
    },
  );

  itWithPostgres(
    'handlers get their context: event id, team, attempt, Slack’s retry, the database, a logger in the delivery’s request',
    async () => {
      const seen: Record<string, unknown>[] = [];
      const handlers = new SlackHandlers().onEvent('app_mention', async (_event, context) => {
        const { rows: found } = await context.postgres!.query<{ one: number }>(
          'test_one',
          'SELECT 1 AS one',
        );
        seen.push({
          eventId: context.eventId,
          teamId: context.teamId,
          attempt: context.attempt,
          retryNum: context.retryNum,
          retryReason: context.retryReason,
          one: found[0]?.one,
          aborted: context.signal.aborted,
        });
        context.logger.info('handling');
      });
      const { server, logs } = await workerApp(handlers);
      const event = slackEvent('EvCtx1').cloneWith({
        slackretrynum: '1',
        slackretryreason: 'http_timeout',
      });
      const message = HTTP.binary(event);
      await request(server)
        .post('/')
        .set(message.headers as Record<string, string>)
        .set('X-Request-ID', 'delivery-1')
        .send(message.body as string)
        .expect(204);
      expect(seen).toEqual([
        {
          eventId: 'EvCtx1',
          teamId: 'T0001',
          attempt: 1,
          retryNum: 1,
          retryReason: 'http_timeout',
          one: 1,
          aborted: false,
        },
      ]);
      expect(logs.find((line) => line.msg === 'handling')).toMatchObject({
        requestId: 'delivery-1',
        id: 'EvCtx1',
        type: 'app_mention',
        attempt: 1,
      });
    },
  );

  itWithPostgres(
    'held by another worker: 409 while its lease lasts, taken over after',
    async () => {
      const { handlers, ran } = recording();
      const { server } = await workerApp(handlers);
      await cluster()!.admin(
        `INSERT INTO slack_work (source, id, type, state, attempts, claimed_by, lease_until)
       VALUES ('${SOURCE}', 'Ev5', 'com.slack.event.app_mention', 'claimed', 1, 'other', now() + interval '1 hour'),
              ('${SOURCE}', 'Ev6', 'com.slack.event.app_mention', 'claimed', 1, 'other', now() - interval '1 second')`,
        'coffeebuddy',
      );
      const busy = await deliver(server, slackEvent('Ev5'));
      expect(busy.status).toBe(409);
      expect((await deliver(server, slackEvent('Ev6'))).status).toBe(204);
      expect(ran).toEqual(['Ev6']);
      expect(await rows()).toEqual([
        expect.objectContaining({ id: 'Ev5', state: 'claimed', claimed_by: 'other' }),
        expect.objectContaining({ id: 'Ev6', state: 'done', attempts: 2 }),
      ]);
      expect(await workCount(server, 'busy')).toBe(1);
    },
  );

  itWithPostgres(
    'a claim lost meanwhile: its lease as set, and the new holder’s claim neither completed nor released',
    async () => {
      const finish = gate();
      const started: string[] = [];
      const handlers = new SlackHandlers().onEvent('app_mention', async (event) => {
        started.push(event.text);
        await finish.opened;
        if (event.text === 'fail') throw new TypeError('failed after the lease');
      });
      const { server, logs } = await workerApp(handlers, {
        SLACK_HANDLER_TIMEOUT_MS: '5000',
        SLACK_WORK_LEASE_MS: '6000',
      });
      const done = deliver(server, slackEvent('Ev20', 'ok'));
      const failed = deliver(server, slackEvent('Ev21', 'fail'));
      await eventually(() => started.length === 2);
      // The lease is SLACK_WORK_LEASE_MS from the claim, in milliseconds.
      const leases = await cluster()!.admin(
        `SELECT extract(epoch FROM lease_until - updated_at)::float8 AS seconds FROM slack_work`,
        'coffeebuddy',
      );
      expect(leases).toEqual([{ seconds: 6 }, { seconds: 6 }]);
      await takeOver(['Ev20', 'Ev21']);
      finish.open();
      expect((await done).status).toBe(204);
      expect((await failed).status).toBe(500);
      expect(await rows()).toEqual([
        expect.objectContaining({ id: 'Ev20', state: 'claimed', claimed_by: 'other' }),
        expect.objectContaining({
          id: 'Ev21',
          state: 'claimed',
          claimed_by: 'other',
          last_error: null,
        }),
      ]);
      expect(logs).toContainEqual(
        expect.objectContaining({ msg: 'slack work done after its lease ended', id: 'Ev20' }),
      );
    },
  );

  itWithPostgres(
    'runs every handler registered for the type; one failing fails the attempt',
    async () => {
      const ran: string[] = [];
      const handlers = new SlackHandlers()
        .onEvent('app_mention', (event) => {
          ran.push(`first ${event.text}`);
        })
        .onEvent('app_mention', (event) => {
          ran.push(`second ${event.text}`);
          if (event.text === 'fail') throw new RangeError('second handler failed');
        });
      const { server } = await workerApp(handlers);
      expect((await deliver(server, slackEvent('Ev22', 'ok'))).status).toBe(204);
      expect((await deliver(server, slackEvent('Ev23', 'fail'))).status).toBe(500);
      expect(ran.sort()).toEqual(['first fail', 'first ok', 'second fail', 'second ok']);
      expect(await rows()).toEqual([
        expect.objectContaining({ id: 'Ev22', state: 'done' }),
        expect.objectContaining({
          id: 'Ev23',
          state: 'released',
          last_error: 'RangeError: second handler failed',
        }),
      ]);
    },
  );

  itWithPostgres(
    'one handler failing at once: the attempt ends only when its siblings have, claim held till then',
    async () => {
      let open!: () => void;
      const gate = new Promise<void>((resolve) => (open = resolve));
      const ran: string[] = [];
      const handlers = new SlackHandlers()
        .onEvent('app_mention', () => {
          ran.push('failing');
          throw new RangeError('fails at once');
        })
        .onEvent('app_mention', async () => {
          await gate;
          ran.push('slow done');
        });
      const { server, app } = await workerApp(handlers);
      let answered = false;
      const answer = deliver(server, slackEvent('Ev25')).then((result) => {
        answered = true;
        return result;
      });
      await eventually(() => ran.includes('failing'));
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(answered).toBe(false);
      expect(app.lifecycle.inFlight().requests).toBe(1);
      expect(await rows()).toEqual([expect.objectContaining({ id: 'Ev25', state: 'claimed' })]);
      open();
      expect((await answer).status).toBe(500);
      expect(ran).toEqual(['failing', 'slow done']);
      expect(await rows()).toEqual([
        expect.objectContaining({
          id: 'Ev25',
          state: 'released',
          last_error: 'RangeError: fails at once',
        }),
      ]);
    },
  );

  itWithPostgres(
    'a dead-lettered event delivered again is a new chance: run and done',
    async () => {
      const { handlers, ran } = recording();
      const { server } = await workerApp(handlers);
      await cluster()!.admin(
        `INSERT INTO slack_work (source, id, type, state, attempts, error_code)
       VALUES ('${SOURCE}', 'Ev24', 'com.slack.event.app_mention', 'dead', 3, '500')`,
        'coffeebuddy',
      );
      expect((await deliver(server, slackEvent('Ev24'))).status).toBe(204);
      expect(ran).toEqual(['Ev24']);
      expect(await rows()).toEqual([
        expect.objectContaining({ id: 'Ev24', state: 'done', attempts: 4 }),
      ]);
    },
  );

  itWithPostgres(
    'PostgreSQL lost while a handler runs: done but not recorded, 503 (retried), never 2xx',
    async () => {
      const finish = gate();
      const started = gate();
      const handlers = new SlackHandlers().onEvent('app_mention', async () => {
        started.open();
        await finish.opened;
      });
      const { server, logs } = await workerApp(handlers, {
        PG_CONNECT_TIMEOUT_MS: '500',
        SLACK_HANDLER_TIMEOUT_MS: '20000',
        SLACK_WORK_LEASE_MS: '21000',
      });
      const answer = deliver(server, slackEvent('Ev25'));
      await started.opened;
      await cluster()!.stop();
      try {
        finish.open();
        expect((await answer).status).toBe(503);
      } finally {
        await cluster()!.start();
      }
      expect(logs).toContainEqual(
        expect.objectContaining({ msg: 'slack work not recorded', id: 'Ev25' }),
      );
      expect(await workCount(server, 'unavailable')).toBe(1);
      expect(await workCount(server, 'done')).toBe(0);
    },
    30_000,
  );

  itWithPostgres(
    'not a CloudEvent, or an attribute missing or unknown: 400, nothing run',
    async () => {
      const { handlers, ran } = recording();
      const { server } = await workerApp(handlers);
      await request(server)
        .post('/')
        .set('content-type', 'application/json')
        .send('{"a":1}')
        .expect(400);
      await request(server)
        .post('/')
        .set({ 'ce-specversion': '1.0', 'ce-id': 'Ev7', 'ce-type': 'com.slack.event.app_mention' })
        .set('content-type', 'application/json')
        .send('{}')
        .expect(400);
      const wrongType = new CloudEvent({
        id: 'Ev8',
        source: SOURCE,
        type: 'com.example.other',
        data: {},
      });
      expect((await deliver(server, wrongType)).status).toBe(400);
      const mismatched = new CloudEvent({
        id: 'Ev9',
        source: SOURCE,
        type: 'com.slack.event.app_mention',
        data: { event: { type: 'message' } },
      });
      expect((await deliver(server, mismatched)).status).toBe(400);
      expect(ran).toEqual([]);
      expect(await rows()).toEqual([]);
      expect(await workCount(server, 'invalid', 'unknown')).toBe(3);
      expect(await workCount(server, 'invalid', 'events')).toBe(1);
    },
  );

  itWithPostgres(
    'another specversion, or an id past its bound: 400, nothing run or remembered',
    async () => {
      const { handlers, ran } = recording();
      const { server } = await workerApp(handlers);
      const older = HTTP.binary(slackEvent('Ev26'));
      await request(server)
        .post('/')
        .set({ ...(older.headers as Record<string, string>), 'ce-specversion': '0.3' })
        .send(older.body as string)
        .expect(400);
      expect((await deliver(server, slackEvent('E'.repeat(129)))).status).toBe(400);
      expect((await deliver(server, slackEvent('E'.repeat(128)))).status).toBe(204);
      expect(ran).toEqual(['E'.repeat(128)]);
      expect((await rows()).map((row) => row.id)).toEqual(['E'.repeat(128)]);
      expect(await workCount(server, 'invalid', 'unknown')).toBe(2);
    },
  );

  itWithPostgres('a type with no handler here: 204 done, nothing claimed', async () => {
    const { handlers, ran } = recording();
    const { server } = await workerApp(handlers);
    expect((await deliver(server, slackEvent('Ev27', 'x', 'reaction_added'))).status).toBe(204);
    expect(ran).toEqual([]);
    expect(await rows()).toEqual([]);
    expect(await workCount(server, 'done')).toBe(1);
  });

  itWithPostgres(
    'PostgreSQL stopped: 503 (retried), readiness names postgres; then 204',
    async () => {
      const { handlers, ran } = recording();
      // Room to reconnect after the restart on a loaded machine; a stopped server refuses at once.
      const { server } = await workerApp(handlers, { PG_CONNECT_TIMEOUT_MS: '5000' });
      await cluster()!.stop();
      try {
        expect((await deliver(server, slackEvent('Ev10'))).status).toBe(503);
        const ready = await request(server).get('/health/ready').expect(503);
        expect(ready.body.detail.components.postgres.status).toBe('unavailable');
        expect(ran).toEqual([]);
      } finally {
        await cluster()!.start();
      }
      expect((await deliver(server, slackEvent('Ev10'))).status).toBe(204);
      expect(ran).toEqual(['Ev10']);
      expect(await workCount(server, 'unavailable')).toBe(1);
    },
    30_000,
  );

  itWithPostgres(
    'readiness checks PostgreSQL, and Vault only when it holds the database password',
    async () => {
      const { server, vault } = await workerApp(recording().handlers);
      // Given PGPASSWORD, a worker uses no Vault: a sealed one does not hold it back.
      vault.status = 'unavailable';
      vault.error = 'sealed';
      const ready = await request(server).get('/health/ready').expect(200);
      expect(Object.keys(ready.body.components)).toEqual(['postgres']);

      const { app } = await harness({
        target: 'slackWorker',
        env: {
          ...cluster()!.env({}),
          VAULT_TOKEN: 'hvs.worker',
          PG_PASSWORD_VAULT_PATH: 'coffeebuddy/postgres',
        },
      });
      expect(Object.keys((await app.checker.check()).components).sort()).toEqual([
        'postgres',
        'vault',
      ]);
    },
  );

  itWithPostgres('done events past the retention are deleted; others stay', async () => {
    const { handlers } = recording();
    const { server } = await workerApp(handlers);
    await cluster()!.admin(
      `INSERT INTO slack_work (source, id, type, state, done_at) VALUES
         ('${SOURCE}', 'Old', 'com.slack.event.app_mention', 'done', now() - interval '2 days'),
         ('${SOURCE}', 'Dead', 'com.slack.event.app_mention', 'dead', NULL),
         ('${SOURCE}', 'Recent', 'com.slack.event.app_mention', 'done', now() - interval '1 hour')`,
      'coffeebuddy',
    );
    expect((await deliver(server, slackEvent('Ev11'))).status).toBe(204);
    const remaining = async () => (await rows()).map((row) => row.id);
    for (let i = 0; i < 200 && (await remaining()).includes('Old'); i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(await remaining()).toEqual(['Dead', 'Ev11', 'Recent']);
  });

  itWithPostgres('a drain that times out releases the claims it still holds', async () => {
    const { handlers } = recording(() => new Promise((resolve) => setTimeout(resolve, 250)));
    const { server, shutdown, exits } = await workerApp(handlers, { SHUTDOWN_TIMEOUT_MS: '0' });
    await cluster()!.admin(
      `INSERT INTO slack_work (source, id, type, state, attempts, claimed_by, lease_until)
       VALUES ('${SOURCE}', 'Ev12other', 'com.slack.event.app_mention', 'claimed', 1, 'other', now() + interval '1 hour')`,
      'coffeebuddy',
    );
    const pending = deliver(server, slackEvent('Ev12'));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await rows()).toEqual([
      expect.objectContaining({ id: 'Ev12', state: 'claimed' }),
      expect.objectContaining({ id: 'Ev12other', state: 'claimed' }),
    ]);
    shutdown.onSignal('SIGTERM');
    await pending.catch(() => undefined);
    for (let i = 0; i < 300 && exits.length === 0; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(exits).toHaveLength(1);
    expect(await rows()).toEqual([
      expect.objectContaining({
        id: 'Ev12',
        state: 'released',
        last_error: 'shutdown',
        claimed_by: null,
      }),
      // Another worker's claim is its own to finish.
      expect.objectContaining({ id: 'Ev12other', state: 'claimed', claimed_by: 'other' }),
    ]);
  });

  itWithPostgres(
    'a fresh worker: probes without Ory or Slack, every work series at 0',
    async () => {
      const { server } = await workerApp();
      const ready = await request(server).get('/health/ready').expect(200);
      // PGPASSWORD here: no Vault either (see the readiness test below).
      expect(Object.keys(ready.body.components)).toEqual(['postgres']);
      await request(server).get('/health/live').expect(200);
      const text = (await request(server).get('/metrics').expect(200)).text;
      for (const kind of ['events', 'interactions', 'unknown']) {
        for (const outcome of [
          'done',
          'duplicate',
          'busy',
          'failed',
          'invalid',
          'unavailable',
          'dead_lettered',
          'overloaded',
        ]) {
          expect(metricValue(text, 'coffeebuddy_slack_work_total', { kind, outcome })).toBe(0);
        }
      }
      expect(
        metricValue(text, 'coffeebuddy_slack_handler_duration_seconds_count', {
          kind: 'events',
          outcome: 'done',
        }),
      ).toBe(0);
      if (findCommand('promtool') !== undefined) expect(promtoolCheckMetrics(text).status).toBe(0);
      await request(server).get('/slack/events').expect(404);
    },
  );
});

describe('slackDeadLetter behind the image pipeline', () => {
  itWithPostgres(
    "records Knative's error attributes, logs id and type only, answers 204",
    async () => {
      const { server, logs } = await harness({ target: 'slackDeadLetter', env: workerEnv() });
      const event = new CloudEvent({
        ...slackEvent('Ev13', 'secret text').toJSON(),
        knativeerrorcode: '500',
        knativeerrordest: 'http://coffeebuddy-slack-worker.coffeebuddy.svc.cluster.local',
        knativeerrordata: Buffer.from('handler failed').toString('base64'),
      });
      expect(await deliver(server, event)).toEqual({ status: 204, text: '' });
      expect(await rows()).toEqual([
        expect.objectContaining({
          id: 'Ev13',
          state: 'dead',
          error_code: '500',
          error_dest: 'http://coffeebuddy-slack-worker.coffeebuddy.svc.cluster.local',
        }),
      ]);
      const line = logs.find((l) => l.msg === 'slack event dead-lettered');
      expect(line).toMatchObject({
        level: 'error',
        id: 'Ev13',
        type: 'com.slack.event.app_mention',
      });
      expect(JSON.stringify(logs)).not.toContain('secret text');
      expect(await workCount(server, 'dead_lettered')).toBe(1);
    },
  );

  itWithPostgres(
    'PostgreSQL stopped: 503 (Knative retries the dead letter), counted unavailable',
    async () => {
      const { server, logs } = await harness({
        target: 'slackDeadLetter',
        env: workerEnv({ PG_CONNECT_TIMEOUT_MS: '5000' }),
      });
      await cluster()!.stop();
      try {
        expect((await deliver(server, slackEvent('Ev28'))).status).toBe(503);
      } finally {
        await cluster()!.start();
      }
      expect(logs).not.toContainEqual(
        expect.objectContaining({ msg: 'slack event dead-lettered' }),
      );
      expect(await workCount(server, 'unavailable')).toBe(1);
      expect(await workCount(server, 'dead_lettered')).toBe(0);
      expect((await deliver(server, slackEvent('Ev28'))).status).toBe(204);
      expect(await rows()).toEqual([expect.objectContaining({ id: 'Ev28', state: 'dead' })]);
    },
    30_000,
  );

  itWithPostgres('an event done meanwhile stays done', async () => {
    await cluster()!.admin(
      `INSERT INTO slack_work (source, id, type, state, done_at)
       VALUES ('${SOURCE}', 'Ev14', 'com.slack.event.app_mention', 'done', now())`,
      'coffeebuddy',
    );
    const { server } = await harness({ target: 'slackDeadLetter', env: workerEnv() });
    expect((await deliver(server, slackEvent('Ev14'))).status).toBe(204);
    expect(await rows()).toEqual([expect.objectContaining({ state: 'done' })]);
  });
});

describe('slackWorker served alone by functions-framework (--target)', () => {
  itWithPostgres(
    'routes its probes, metrics and POST /, answering events as behind the entry',
    async () => {
      const { handlers, ran } = recording();
      const { app, server } = await workerApp(handlers);
      const framework = serveFunction(app.functions.slackWorker!);
      try {
        // A GET reached functions-framework's cloudEvent middleware once, and crashed it: 500.
        await request(framework).get('/health/live').expect(200);
        await request(framework).get('/health/ready').expect(200);
        await request(framework).get('/metrics').expect(200);
        expect((await deliver(framework, slackEvent('Ev15'))).status).toBe(204);
        expect((await deliver(framework, slackEvent('Ev15'), 'structured')).status).toBe(204);
        expect((await deliver(framework, slackEvent('Ev16'), 'structured')).status).toBe(204);
        expect(ran).toEqual(['Ev15', 'Ev16']);
        const notAnEvent = await request(framework)
          .post('/')
          .set('content-type', 'application/json')
          .send('{"a":1}');
        expect(notAnEvent.status).toBe(400);
        // Knative's contract, as behind the entry: 409 is retried, 400 is not.
        await cluster()!.admin(
          `INSERT INTO slack_work (source, id, type, state, attempts, claimed_by, lease_until)
           VALUES ('${SOURCE}', 'Ev17', 'com.slack.event.app_mention', 'claimed', 1, 'other', now() + interval '1 hour')`,
          'coffeebuddy',
        );
        expect((await deliver(framework, slackEvent('Ev17'))).status).toBe(409);
        const mismatched = new CloudEvent({
          id: 'Ev18',
          source: SOURCE,
          type: 'com.slack.event.app_mention',
          data: { event: { type: 'message' } },
        });
        expect((await deliver(framework, mismatched)).status).toBe(400);
        expect(ran).toEqual(['Ev15', 'Ev16']);
        expect(await workCount(server, 'busy')).toBe(1);
        expect(Object.keys(app.functions).sort()).toEqual([
          'healthLive',
          'healthReady',
          'metrics',
          'slackWorker',
        ]);
      } finally {
        framework.close();
      }
    },
  );
});
