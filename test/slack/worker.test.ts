import { Registry } from 'prom-client';
import type { PostgresClient } from '../../lib/clients/postgres';
import type { ReceivedEvent } from '../../lib/eventing/event';
import { Lifecycle } from '../../lib/lifecycle';
import { currentContext, runInContext, type RequestContext } from '../../lib/request-context';
import { SlackRateLimitedError } from '../../lib/slack/client';
import { SlackHandlers } from '../../lib/slack/handlers';
import { ResponseUrls, SlackRespondRefusedError } from '../../lib/slack/respond';
import { createSlackApiMetrics } from '../../lib/slack/api-metrics';
import { createWorkMetrics } from '../../lib/slack/work-metrics';
import { WorkStore } from '../../lib/slack/work-store';
import { kindOf, SlackWorker } from '../../lib/slack/worker';
import { metricValue } from '../../testing/metrics-text';
import { appDatabase, APP_ROLE, itWithPostgres, migratedCluster } from '../../testing/postgres';
import { startHooksStandIn, type HooksStandIn } from '../../testing/slack-hooks';

/**
 * SlackWorker itself, on a real PostgreSQL with the repository's migrations: what each event
 * becomes (the answer Knative reads, the work table's row, the counters, the log lines), without
 * the HTTP function in front (test/slack-worker.test.ts has that).
 */

const cluster = migratedCluster(['slack_work']);
const SOURCE = 'https://slack.com/teams/T0001';
const WORKER = 'worker-under-test';

let hooks: HooksStandIn;
beforeAll(async () => {
  hooks = await startHooksStandIn();
});
afterAll(() => hooks.close());

interface Built {
  worker: SlackWorker;
  db: PostgresClient;
  lifecycle: Lifecycle;
  registry: Registry;
  lines: Record<string, unknown>[];
}
const opened: { db: PostgresClient; responseUrls: ResponseUrls }[] = [];
afterEach(async () => {
  hooks.reset();
  await Promise.all(
    opened.splice(0).map(async ({ db, responseUrls }) => {
      responseUrls.close();
      await db.close().catch(() => undefined);
    }),
  );
});

/** A worker on the test cluster (or on `env`'s database), its lines kept. */
function build(
  handlers: SlackHandlers,
  {
    env = {},
    handlerTimeoutMs = 5000,
  }: { env?: NodeJS.ProcessEnv; handlerTimeoutMs?: number } = {},
): Built {
  const { db, logger, lines, registry } = appDatabase(cluster()!, env);
  const responseUrls = new ResponseUrls({
    prefix: hooks.prefix,
    timeoutMs: 2000,
    logger,
    metrics: createSlackApiMetrics(new Registry()),
  });
  opened.push({ db, responseUrls });
  const lifecycle = new Lifecycle();
  const worker = new SlackWorker({
    store: new WorkStore(db, WORKER),
    handlers,
    lifecycle,
    logger,
    metrics: createWorkMetrics(registry),
    slack: { call: () => Promise.reject(new Error('no Slack here')) },
    postgres: db,
    responseUrls,
    readiness: () => Promise.reject(new Error('no readiness here')),
    redact: (text) => text.replaceAll('s3cret', '[redacted]'),
    handlerTimeoutMs,
    leaseMs: 60_000,
    retentionMs: 24 * 3600_000,
  });
  return { worker, db, lifecycle, registry, lines };
}

/** An Events API event as the ingress publishes it. */
function slackEvent(id: string, text = id, slackType = 'app_mention'): ReceivedEvent {
  return {
    id,
    source: SOURCE,
    type: `com.slack.event.${slackType}`,
    data: {
      type: 'event_callback',
      event_id: id,
      team_id: 'T0001',
      event: { type: slackType, text },
    },
    attributes: {},
  };
}

function rows(): Promise<Record<string, unknown>[]> {
  return cluster()!.admin(
    'SELECT id, state, attempts, claimed_by, last_error FROM slack_work ORDER BY id',
    'coffeebuddy',
  );
}

const workCount = async (registry: Registry, outcome: string, kind = 'events') =>
  metricValue(await registry.metrics(), 'coffeebuddy_slack_work_total', { kind, outcome });
const handlerCount = async (registry: Registry, outcome: string, kind = 'events') =>
  metricValue(await registry.metrics(), 'coffeebuddy_slack_handler_duration_seconds_count', {
    kind,
    outcome,
  });

/** Handlers that record the mentions they ran. */
function recording(behaviour: (text: string) => unknown = () => undefined) {
  const ran: string[] = [];
  const handlers = new SlackHandlers().onEvent('app_mention', async (event) => {
    await behaviour(event.text);
    ran.push(event.text);
  });
  return { handlers, ran };
}

describe('kindOf', () => {
  it('names the kind of a Slack type, and `unknown` for any other', () => {
    expect(kindOf('com.slack.event.app_mention')).toBe('events');
    expect(kindOf('com.slack.interaction.block_actions')).toBe('interactions');
    expect(kindOf('com.slack.command.coffee')).toBe('commands');
    expect(kindOf('com.example.slack.event.x')).toBe('unknown');
  });
});

describe('SlackWorker: what is refused before anything is claimed', () => {
  const refusals: [string, ReceivedEvent, string, string][] = [
    ['data null', { ...slackEvent('Ev1'), data: null }, 'data is not an object', 'events'],
    ['data an array', { ...slackEvent('Ev1'), data: [1] }, 'data is not an object', 'events'],
    ['data a text', { ...slackEvent('Ev1'), data: 'x' }, 'data is not an object', 'events'],
    [
      'no inner event',
      { ...slackEvent('Ev1'), data: { type: 'event_callback' } },
      'data is not the envelope of an event of this type',
      'events',
    ],
    [
      'an inner event of null',
      { ...slackEvent('Ev1'), data: { type: 'event_callback', event: null } },
      'data is not the envelope of an event of this type',
      'events',
    ],
    [
      'an inner event that is text',
      { ...slackEvent('Ev1'), data: { type: 'event_callback', event: 'app_mention' } },
      'data is not the envelope of an event of this type',
      'events',
    ],
    [
      'an inner event of another type',
      { ...slackEvent('Ev1'), data: { type: 'event_callback', event: { type: 'message' } } },
      'data is not the envelope of an event of this type',
      'events',
    ],
    [
      'an interaction of another type',
      {
        id: 'sha256:a',
        source: SOURCE,
        type: 'com.slack.interaction.block_actions',
        data: { type: 'view_submission' },
        attributes: {},
      },
      'data is not an interaction of this type',
      'interactions',
    ],
    [
      'a command without its name',
      {
        id: 'sha256:c',
        source: SOURCE,
        type: 'com.slack.command.coffee',
        data: { text: 'brew' },
        attributes: {},
      },
      'data is not a command of this type',
      'commands',
    ],
    [
      'another command',
      {
        id: 'sha256:c',
        source: SOURCE,
        type: 'com.slack.command.coffee',
        data: { command: '/tea', text: 'brew' },
        attributes: {},
      },
      'data is not a command of this type',
      'commands',
    ],
    [
      'not a Slack type',
      { ...slackEvent('Ev1'), type: 'com.example.other' },
      'not a Slack event type',
      'unknown',
    ],
  ];

  for (const [name, event, why, kind] of refusals) {
    itWithPostgres(`${name}: 400 invalid, said why, counted`, async () => {
      const ran: string[] = [];
      const handlers = new SlackHandlers()
        .onEvent('app_mention', () => {
          ran.push('event');
        })
        .onEvent('message', () => {
          ran.push('message');
        })
        .onAction('a', () => {
          ran.push('action');
        })
        .addSubcommand('brew', { description: 'x', run: () => 'ok', later: () => undefined });
      const { worker, registry, lines } = build(handlers);
      expect(await worker.handle(event)).toEqual({ outcome: 'invalid', status: 400, error: why });
      expect(ran).toEqual([]);
      expect(await rows()).toEqual([]);
      expect(await workCount(registry, 'invalid', kind)).toBe(1);
      expect(lines).toEqual([
        expect.objectContaining({
          level: 'warn',
          msg: 'slack event refused',
          id: event.id,
          type: event.type,
          reason: why,
        }),
      ]);
    });
  }
});

describe('SlackWorker: running an event once', () => {
  itWithPostgres('done: 204, recorded done, counted and timed; then a duplicate', async () => {
    const { handlers, ran } = recording();
    const { worker, registry } = build(handlers);
    expect(await worker.handle(slackEvent('Ev1'))).toEqual({ outcome: 'done', status: 204 });
    expect(await worker.handle(slackEvent('Ev1'))).toEqual({ outcome: 'duplicate', status: 204 });
    expect(ran).toEqual(['Ev1']);
    expect(await rows()).toEqual([
      { id: 'Ev1', state: 'done', attempts: 1, claimed_by: null, last_error: null },
    ]);
    expect(await workCount(registry, 'done')).toBe(1);
    expect(await workCount(registry, 'duplicate')).toBe(1);
    expect(await handlerCount(registry, 'done')).toBe(1);
  });

  itWithPostgres('handlers are timed in seconds', async () => {
    const { handlers } = recording(() => new Promise((resolve) => setTimeout(resolve, 300)));
    const { worker, registry } = build(handlers);
    const before = performance.now();
    await worker.handle(slackEvent('Ev1'));
    const handled = (performance.now() - before) / 1000;
    const seconds = metricValue(
      await registry.metrics(),
      'coffeebuddy_slack_handler_duration_seconds_sum',
      { kind: 'events', outcome: 'done' },
    );
    // At least the handler's wait (a timer may fire a millisecond early), at most handle()'s time.
    expect(seconds).toBeGreaterThanOrEqual(0.299);
    expect(seconds).toBeLessThanOrEqual(handled);
  });

  itWithPostgres('no handler for the type: 204 done, nothing claimed, nothing timed', async () => {
    const { handlers, ran } = recording();
    const { worker, registry } = build(handlers);
    expect(await worker.handle(slackEvent('Ev2', 'x', 'reaction_added'))).toEqual({
      outcome: 'done',
      status: 204,
    });
    const nobody = {
      id: 'sha256:n',
      source: SOURCE,
      type: 'com.slack.interaction.block_actions',
      data: { type: 'block_actions', actions: [{ action_id: 'nobody' }] },
      attributes: {},
    };
    expect(await worker.handle(nobody)).toEqual({ outcome: 'done', status: 204 });
    expect(ran).toEqual([]);
    expect(await rows()).toEqual([]);
    expect(await workCount(registry, 'done')).toBe(1);
    expect(await workCount(registry, 'done', 'interactions')).toBe(1);
    expect(await handlerCount(registry, 'done')).toBe(0);
  });

  itWithPostgres('held by another worker: 409 busy, with why, nothing run', async () => {
    const { handlers, ran } = recording();
    const { worker, registry } = build(handlers);
    await cluster()!.admin(
      `INSERT INTO slack_work (source, id, type, state, attempts, claimed_by, lease_until)
       VALUES ('${SOURCE}', 'Ev3', 'com.slack.event.app_mention', 'claimed', 1, 'other', now() + interval '1 hour')`,
      'coffeebuddy',
    );
    expect(await worker.handle(slackEvent('Ev3'))).toEqual({
      outcome: 'busy',
      status: 409,
      error: 'another worker holds this event',
    });
    expect(ran).toEqual([]);
    expect(await workCount(registry, 'busy')).toBe(1);
  });

  itWithPostgres(
    'an interaction and a command: their handlers get the payload and the command read from the data',
    async () => {
      const got: unknown[] = [];
      const handlers = new SlackHandlers()
        .onAction('a', (action, payload, context) => {
          got.push([action.action_id, payload.type, context.type, context.eventId]);
        })
        .addSubcommand('brew', {
          description: 'x',
          run: () => 'never in the worker',
          later: (args, command, context) => {
            got.push([args, command.userId, context.type, context.teamId]);
          },
        });
      const { worker, registry } = build(handlers);
      const interaction: ReceivedEvent = {
        id: 'sha256:i',
        source: SOURCE,
        type: 'com.slack.interaction.block_actions',
        data: { type: 'block_actions', team: { id: 'T0001' }, actions: [{ action_id: 'a' }] },
        attributes: {},
      };
      const command: ReceivedEvent = {
        id: 'sha256:c',
        source: SOURCE,
        type: 'com.slack.command.coffee',
        data: { command: '/coffee', text: 'brew a pot', user_id: 'U7', team_id: 'T0002' },
        attributes: {},
      };
      expect((await worker.handle(interaction)).status).toBe(204);
      expect((await worker.handle(command)).status).toBe(204);
      expect(got).toEqual([
        ['a', 'block_actions', 'block_actions', 'sha256:i'],
        ['a pot', 'U7', 'coffee', 'T0002'],
      ]);
      expect(await workCount(registry, 'done', 'interactions')).toBe(1);
      expect(await workCount(registry, 'done', 'commands')).toBe(1);
      expect(await handlerCount(registry, 'done', 'commands')).toBe(1);
    },
  );

  itWithPostgres(
    'Slack’s retry and when Slack sent it reach the context: a response_url 30 minutes old is refused',
    async () => {
      const seen: unknown[] = [];
      const handlers = new SlackHandlers().addSubcommand('brew', {
        description: 'x',
        run: () => 'ok',
        later: async (_args, _command, context) => {
          seen.push([context.retryNum, context.retryReason]);
          seen.push(
            await context.respond('brewing').then(
              () => 'sent',
              (error: unknown) => error,
            ),
          );
        },
      });
      const { worker } = build(handlers);
      const command = (id: string, attributes: Record<string, string>): ReceivedEvent => ({
        id,
        source: SOURCE,
        type: 'com.slack.command.coffee',
        data: { command: '/coffee', text: 'brew', response_url: hooks.issue() },
        attributes,
      });
      const old = new Date(Date.now() - 31 * 60_000).toISOString();
      await worker.handle(
        command('sha256:1', { time: old, slackretrynum: '2', slackretryreason: 'http_timeout' }),
      );
      await worker.handle(command('sha256:2', { time: new Date().toISOString() }));
      await worker.handle(command('sha256:3', { time: 'not a time' }));
      expect(seen).toEqual([
        [2, 'http_timeout'],
        new SlackRespondRefusedError('expired'),
        [undefined, undefined],
        'sent',
        [undefined, undefined],
        'sent',
      ]);
    },
  );

  itWithPostgres(
    'a time that is no date: respond()’s budget counts from the first use, five posts then refused',
    async () => {
      const outcomes: unknown[] = [];
      const url = hooks.issue();
      const handlers = new SlackHandlers().addSubcommand('brew', {
        description: 'x',
        run: () => 'ok',
        later: async (_args, _command, context) => {
          for (let use = 1; use <= 6; use += 1) {
            outcomes.push(
              await context.respond(`use ${use}`).then(
                () => 'sent',
                (error: unknown) => error,
              ),
            );
          }
        },
      });
      const { worker } = build(handlers);
      await worker.handle({
        id: 'sha256:t',
        source: SOURCE,
        type: 'com.slack.command.coffee',
        data: { command: '/coffee', text: 'brew', response_url: url },
        attributes: { time: 'not a time' },
      });
      // The sixth is refused here, before it is sent (not by Slack: a budget kept).
      expect(outcomes).toEqual([
        ...Array<string>(5).fill('sent'),
        new SlackRespondRefusedError('uses_spent'),
      ]);
      expect(hooks.postsTo(url)).toHaveLength(5);
    },
  );

  itWithPostgres(
    'handlers run in the delivery’s request context, else a new one with the event’s trace id',
    async () => {
      const contexts: (RequestContext | undefined)[] = [];
      const handlers = new SlackHandlers().onEvent('app_mention', () => {
        contexts.push(currentContext());
      });
      const { worker } = build(handlers);
      const traced = (id: string): ReceivedEvent => ({
        ...slackEvent(id),
        attributes: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
      });
      await worker.handle(traced('Ev4'));
      await runInContext({ requestId: 'delivery-1' }, () => worker.handle(traced('Ev5')));
      await runInContext({ requestId: 'delivery-2', traceId: 'f'.repeat(32) }, () =>
        worker.handle(traced('Ev6')),
      );
      await runInContext({ requestId: 'delivery-3' }, () => worker.handle(slackEvent('Ev7')));
      expect(contexts).toEqual([
        {
          requestId: expect.stringMatching(/^[0-9a-f-]{36}$/),
          traceId: '0af7651916cd43dd8448eb211c80319c',
        },
        { requestId: 'delivery-1', traceId: '0af7651916cd43dd8448eb211c80319c' },
        { requestId: 'delivery-2', traceId: 'f'.repeat(32) },
        { requestId: 'delivery-3' },
      ]);
    },
  );
});

describe('SlackWorker: what a claim takes over', () => {
  itWithPostgres(
    'events released, dead-lettered, replayed, or whose lease ended are run again; a live lease is not',
    async () => {
      const { handlers, ran } = recording();
      const { worker } = build(handlers);
      await cluster()!.admin(
        `INSERT INTO slack_work (source, id, type, state, attempts, claimed_by, lease_until, dead_at) VALUES
           ('${SOURCE}', 'Released', 'com.slack.event.app_mention', 'released', 1, NULL, NULL, NULL),
           ('${SOURCE}', 'Dead', 'com.slack.event.app_mention', 'dead', 3, NULL, NULL, now()),
           ('${SOURCE}', 'Replayed', 'com.slack.event.app_mention', 'replayed', 2, NULL, NULL, now()),
           ('${SOURCE}', 'Ended', 'com.slack.event.app_mention', 'claimed', 1, 'other', now() - interval '1 second', NULL),
           ('${SOURCE}', 'Live', 'com.slack.event.app_mention', 'claimed', 1, 'other', now() + interval '1 hour', NULL)`,
        'coffeebuddy',
      );
      for (const id of ['Released', 'Dead', 'Replayed', 'Ended', 'Live']) {
        await worker.handle(slackEvent(id));
      }
      expect(ran).toEqual(['Released', 'Dead', 'Replayed', 'Ended']);
      expect(
        await cluster()!.admin(
          'SELECT id, state, attempts, dead_at IS NULL AS forgotten FROM slack_work ORDER BY id',
          'coffeebuddy',
        ),
      ).toEqual([
        { id: 'Dead', state: 'done', attempts: 4, forgotten: true },
        { id: 'Ended', state: 'done', attempts: 2, forgotten: true },
        { id: 'Live', state: 'claimed', attempts: 1, forgotten: true },
        { id: 'Released', state: 'done', attempts: 2, forgotten: true },
        { id: 'Replayed', state: 'done', attempts: 3, forgotten: true },
      ]);
    },
  );

  itWithPostgres('a claim holds for leaseMs, in this worker’s name', async () => {
    const seen: Record<string, unknown>[] = [];
    const handlers = new SlackHandlers().onEvent('app_mention', async () => {
      seen.push(
        ...(await cluster()!.admin(
          `SELECT state, claimed_by, extract(epoch FROM lease_until - updated_at)::float8 AS seconds
             FROM slack_work`,
          'coffeebuddy',
        )),
      );
    });
    const { worker } = build(handlers);
    await worker.handle(slackEvent('Ev30'));
    expect(seen).toEqual([{ state: 'claimed', claimed_by: WORKER, seconds: 60 }]);
  });

  itWithPostgres(
    'a dead letter that came while the event was held: a failed attempt leaves it dead, a done one forgets it and the event kept',
    async () => {
      const deadLetterCame = (id: string) =>
        cluster()!.admin(
          `UPDATE slack_work SET dead_at = now(), event_attributes = '{}', event_data = '{"a":1}'
            WHERE id = '${id}'`,
          'coffeebuddy',
        );
      const { handlers } = recording(async (text) => {
        await deadLetterCame(text);
        if (text === 'EvFail') throw new Error('failed');
      });
      const { worker } = build(handlers);
      expect((await worker.handle(slackEvent('EvFail'))).status).toBe(500);
      expect((await worker.handle(slackEvent('EvDone'))).status).toBe(204);
      expect(
        await cluster()!.admin(
          `SELECT id, state, dead_at IS NULL AS forgotten, event_attributes, event_data, lease_until
             FROM slack_work ORDER BY id`,
          'coffeebuddy',
        ),
      ).toEqual([
        {
          id: 'EvDone',
          state: 'done',
          forgotten: true,
          event_attributes: null,
          event_data: null,
          lease_until: null,
        },
        {
          id: 'EvFail',
          state: 'dead',
          forgotten: false,
          event_attributes: '{}',
          event_data: '{"a":1}',
          lease_until: null,
        },
      ]);
    },
  );
});

describe('SlackWorker: failures', () => {
  itWithPostgres(
    'a handler that throws: 500, logged as an error, released with its message redacted, timed as failed',
    async () => {
      const { handlers } = recording(() => {
        throw new TypeError('password s3cret refused');
      });
      const { worker, registry, lines } = build(handlers);
      expect(await worker.handle(slackEvent('Ev8'))).toEqual({
        outcome: 'failed',
        status: 500,
        error: 'handler failed',
      });
      expect(await rows()).toEqual([
        {
          id: 'Ev8',
          state: 'released',
          attempts: 1,
          claimed_by: null,
          last_error: 'TypeError: password [redacted] refused',
        },
      ]);
      expect(lines.filter((line) => line.msg === 'slack handler failed')).toEqual([
        expect.objectContaining({
          level: 'error',
          id: 'Ev8',
          type: 'app_mention',
          attempt: 1,
          error: expect.objectContaining({ name: 'TypeError' }),
        }),
      ]);
      expect(await workCount(registry, 'failed')).toBe(1);
      expect(await handlerCount(registry, 'failed')).toBe(1);
      expect(await handlerCount(registry, 'done')).toBe(0);
    },
  );

  itWithPostgres(
    'past the handler timeout: 500, released as `timeout`, timed as failed',
    async () => {
      let finish!: () => void;
      const finished = new Promise<void>((resolve) => (finish = resolve));
      const { handlers } = recording(() => finished);
      const { worker, registry, lifecycle, lines } = build(handlers, { handlerTimeoutMs: 50 });
      expect(await worker.handle(slackEvent('Ev9'))).toEqual({
        outcome: 'failed',
        status: 500,
        error: 'handler failed',
      });
      expect(await rows()).toEqual([
        expect.objectContaining({ state: 'released', last_error: 'timeout' }),
      ]);
      expect(lines).toContainEqual(
        expect.objectContaining({ level: 'error', msg: 'slack handler failed', error: 'timeout' }),
      );
      expect(await handlerCount(registry, 'failed')).toBe(1);
      finish();
      expect(await lifecycle.idle(5000)).toBe(true);
    },
  );

  itWithPostgres(
    'rate limited by Slack: 429 with Slack’s wait, a warning not an error, timed as rate_limited',
    async () => {
      const { handlers } = recording(() => {
        throw new SlackRateLimitedError('chat.postMessage', 6.5);
      });
      const { worker, registry, lines } = build(handlers);
      expect(await worker.handle(slackEvent('Ev10'))).toEqual({
        outcome: 'rate_limited',
        status: 429,
        error: 'rate limited by Slack',
        retryAfterSeconds: 7,
      });
      expect(await rows()).toEqual([
        expect.objectContaining({
          state: 'released',
          last_error: 'SlackRateLimitedError: chat.postMessage rate limited: retry after 6.5 s',
        }),
      ]);
      expect(lines.filter((line) => String(line.msg).startsWith('slack handler'))).toEqual([
        expect.objectContaining({
          level: 'warn',
          msg: 'slack handler rate limited',
          id: 'Ev10',
          method: 'chat.postMessage',
          retryAfterSeconds: 7,
        }),
      ]);
      expect(await workCount(registry, 'rate_limited')).toBe(1);
      expect(await workCount(registry, 'failed')).toBe(0);
      expect(await handlerCount(registry, 'rate_limited')).toBe(1);
      expect(await handlerCount(registry, 'failed')).toBe(0);
    },
  );

  itWithPostgres('PostgreSQL unreachable: 503 unavailable, nothing run', async () => {
    const { handlers, ran } = recording();
    // A port nothing listens on: the claim's connection is refused.
    const { worker, registry, lines } = build(handlers, { env: { PGPORT: '1' } });
    expect(await worker.handle(slackEvent('Ev11'))).toEqual({
      outcome: 'unavailable',
      status: 503,
      error: 'database unavailable',
    });
    expect(ran).toEqual([]);
    expect(await workCount(registry, 'unavailable')).toBe(1);
    expect(lines).toContainEqual(
      expect.objectContaining({ level: 'warn', msg: 'slack work unavailable', id: 'Ev11' }),
    );
  });

  itWithPostgres(
    'the database gone while a handler fails: still 500, the release’s failure a warning',
    async () => {
      const held: { db?: PostgresClient } = {};
      const { handlers } = recording(async () => {
        await held.db!.close();
        throw new Error('failed');
      });
      const built = build(handlers);
      held.db = built.db;
      expect(await built.worker.handle(slackEvent('Ev12'))).toMatchObject({
        outcome: 'failed',
        status: 500,
      });
      expect(built.lines).toContainEqual(
        expect.objectContaining({ level: 'warn', msg: 'slack work not released', id: 'Ev12' }),
      );
    },
  );

  itWithPostgres(
    'the database gone while a handler succeeds: 503 (Knative retries), never done',
    async () => {
      const held: { db?: PostgresClient } = {};
      const { handlers } = recording(async () => {
        await held.db!.close();
      });
      const built = build(handlers);
      held.db = built.db;
      expect(await built.worker.handle(slackEvent('Ev13'))).toEqual({
        outcome: 'unavailable',
        status: 503,
        error: 'database unavailable',
      });
      expect(built.lines).toContainEqual(
        expect.objectContaining({ level: 'warn', msg: 'slack work not recorded', id: 'Ev13' }),
      );
      expect(await workCount(built.registry, 'unavailable')).toBe(1);
      expect(await workCount(built.registry, 'done')).toBe(0);
      expect(await rows()).toEqual([expect.objectContaining({ id: 'Ev13', state: 'claimed' })]);
    },
  );

  itWithPostgres(
    'a claim taken over while its handler ran: done here, the other worker’s claim untouched, a warning',
    async () => {
      const { handlers } = recording(async () => {
        await cluster()!.admin(
          `UPDATE slack_work SET claimed_by = 'other' WHERE id = 'Ev14'`,
          'coffeebuddy',
        );
      });
      const { worker, lines } = build(handlers);
      expect(await worker.handle(slackEvent('Ev14'))).toEqual({ outcome: 'done', status: 204 });
      expect(await rows()).toEqual([
        expect.objectContaining({ id: 'Ev14', state: 'claimed', claimed_by: 'other' }),
      ]);
      expect(lines).toContainEqual(
        expect.objectContaining({
          level: 'warn',
          msg: 'slack work done after its lease ended',
          id: 'Ev14',
          attempt: 1,
        }),
      );
    },
  );
});

describe('SlackWorker: the retention sweep and the drain', () => {
  const oldDone = (id: string) =>
    cluster()!.admin(
      `INSERT INTO slack_work (source, id, type, state, done_at)
       VALUES ('${SOURCE}', '${id}', 'com.slack.event.app_mention', 'done', now() - interval '2 days')`,
      'coffeebuddy',
    );

  itWithPostgres(
    'after work is done, done events past the retention are deleted, at most once a minute',
    async () => {
      const { handlers } = recording();
      const { worker, lifecycle, lines } = build(handlers);
      await oldDone('Old1');
      await worker.handle(slackEvent('Ev15'));
      expect(await lifecycle.idle(5000)).toBe(true);
      expect((await rows()).map((row) => row.id)).toEqual(['Ev15']);
      expect(lines).toContainEqual(
        expect.objectContaining({ level: 'info', msg: 'slack work swept', deleted: 1 }),
      );
      // Within the minute: no second sweep.
      await oldDone('Old2');
      await worker.handle(slackEvent('Ev16'));
      expect(await lifecycle.idle(5000)).toBe(true);
      expect((await rows()).map((row) => row.id)).toEqual(['Ev15', 'Ev16', 'Old2']);
      expect(lines.filter((line) => line.msg === 'slack work swept')).toHaveLength(1);
    },
  );

  itWithPostgres('a sweep that fails: a warning saying why, the event still done', async () => {
    const { handlers } = recording();
    const { worker, lifecycle, lines } = build(handlers);
    // Done rows can be recorded but not deleted.
    await cluster()!.admin(`REVOKE DELETE ON slack_work FROM ${APP_ROLE}`, 'coffeebuddy');
    try {
      expect(await worker.handle(slackEvent('Ev18'))).toEqual({ outcome: 'done', status: 204 });
      expect(await lifecycle.idle(5000)).toBe(true);
    } finally {
      await cluster()!.admin(`GRANT DELETE ON slack_work TO ${APP_ROLE}`, 'coffeebuddy');
    }
    expect(lines).toEqual([
      expect.objectContaining({
        level: 'warn',
        msg: 'slack work not swept',
        // Said by the statement and PostgreSQL's code (insufficient privilege), never its text.
        reason: 'query work_sweep failed (SQLSTATE 42501)',
      }),
    ]);
    expect(await rows()).toEqual([expect.objectContaining({ id: 'Ev18', state: 'done' })]);
  });

  itWithPostgres('a sweep that deletes nothing says nothing', async () => {
    const { handlers } = recording();
    const { worker, lifecycle, lines } = build(handlers);
    await worker.handle(slackEvent('Ev17'));
    expect(await lifecycle.idle(5000)).toBe(true);
    expect(lines).toEqual([]);
  });

  itWithPostgres('close() gives back the claims this worker holds, and says how many', async () => {
    const { worker, lines } = build(recording().handlers);
    await cluster()!.admin(
      `INSERT INTO slack_work (source, id, type, state, attempts, claimed_by, lease_until) VALUES
         ('${SOURCE}', 'Mine1', 'com.slack.event.app_mention', 'claimed', 1, '${WORKER}', now() + interval '1 hour'),
         ('${SOURCE}', 'Mine2', 'com.slack.event.app_mention', 'claimed', 1, '${WORKER}', now() + interval '1 hour'),
         ('${SOURCE}', 'Theirs', 'com.slack.event.app_mention', 'claimed', 1, 'other', now() + interval '1 hour')`,
      'coffeebuddy',
    );
    // A dead letter came for Mine1 while this worker held it: given back, it stays dead.
    await cluster()!.admin(
      `UPDATE slack_work SET dead_at = now() WHERE id = 'Mine1'`,
      'coffeebuddy',
    );
    await worker.close();
    expect(await rows()).toEqual([
      expect.objectContaining({ id: 'Mine1', state: 'dead', last_error: 'shutdown' }),
      expect.objectContaining({ id: 'Mine2', state: 'released', last_error: 'shutdown' }),
      expect.objectContaining({ id: 'Theirs', state: 'claimed', claimed_by: 'other' }),
    ]);
    expect(lines).toEqual([
      expect.objectContaining({
        level: 'warn',
        msg: 'slack work released at shutdown',
        released: 2,
      }),
    ]);
    // Nothing held: nothing said.
    lines.length = 0;
    await worker.close();
    expect(lines).toEqual([]);
  });

  itWithPostgres('close() without the database: a warning, no throw', async () => {
    const { worker, db, lines } = build(recording().handlers);
    await db.close();
    await worker.close();
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: 'warn',
        msg: 'slack work not released at shutdown',
        reason: 'the connection failed',
      }),
    );
  });
});
