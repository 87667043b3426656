import { CloudEvent, HTTP } from 'cloudevents';
import { Registry } from 'prom-client';
import request from 'supertest';
import { buildPostgresClient, type PostgresClient } from '../lib/clients/postgres';
import { loadSettings } from '../lib/config/settings';
import { CloudEventPublisher } from '../lib/eventing/publisher';
import { createLogger } from '../lib/logger';
import { DeadLetterStore } from '../lib/slack/dead-store';
import { SlackHandlers } from '../lib/slack/handlers';
import { replayDeadEvents, type ReplayOptions } from '../lib/slack/replay';
import { appHarness } from '../testing/app';
import { FakeClient } from '../testing/fakes';
import { metricValue } from '../testing/metrics-text';
import { APP_PASSWORD, itWithPostgres, migratedCluster } from '../testing/postgres';
import { startSink, type Sink } from '../testing/sink';
import { eventually, findCommand, promtoolCheckMetrics } from '../testing/tools';

/**
 * The slackDeadLetter function and the worker behind the image's pipeline on a real PostgreSQL
 * with the repository's migrations: dead letters that cannot do harm (type, done rows, live
 * claims), the event kept with its row, dead rows bounded, the gauge, and replay to a sink.
 */

const cluster = migratedCluster(['slack_work']);
const SOURCE = 'https://slack.com/teams/T0001';
const WORKER_URL = 'http://coffeebuddy-slack-worker.coffeebuddy.svc.cluster.local';
const harness = appHarness({ env: { READINESS_CACHE_TTL_MS: '0' } });

const env = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({
  READINESS_CACHE_TTL_MS: '0',
  SLACK_HANDLER_TIMEOUT_MS: '5000',
  SLACK_WORK_LEASE_MS: '6000',
  ...cluster()!.env({ PGPASSWORD: APP_PASSWORD }),
  ...extra,
});

const deadLetterApp = (extra: NodeJS.ProcessEnv = {}) =>
  harness({ target: 'slackDeadLetter', env: env(extra) });

/** A Slack event as the ingress publishes it, with the ingress's K_CE_OVERRIDES extension. */
function slackEvent(id: string, text = id): CloudEvent<unknown> {
  return new CloudEvent({
    id,
    source: SOURCE,
    type: 'com.slack.event.app_mention',
    datacontenttype: 'application/json',
    cluster: 'prod',
    data: { type: 'event_callback', event_id: id, event: { type: 'app_mention', text } },
  });
}

/** The event as Knative dead-letters it after the worker answered `code`. */
function deadLetter(event: CloudEvent<unknown>, code = '500'): CloudEvent<unknown> {
  return event.cloneWith(
    {
      knativeerrorcode: code,
      knativeerrordest: WORKER_URL,
      knativeerrordata: Buffer.from('{"error":"handler failed"}').toString('base64'),
    },
    false,
  );
}

type Server = Parameters<typeof request>[0];

async function deliver(server: Server, event: CloudEvent<unknown>): Promise<number> {
  const message = HTTP.binary(event);
  const res = await request(server)
    .post('/')
    .set(message.headers as Record<string, string>)
    .send(message.body as string);
  return res.status;
}

function rows(): Promise<Record<string, unknown>[]> {
  return cluster()!.admin(
    `SELECT id, state, attempts, claimed_by, error_code, dead_at, event_attributes, event_data,
            replays, replayed_at
       FROM slack_work ORDER BY id`,
    'coffeebuddy',
  );
}

async function metric(server: Server, name: string, labels: Record<string, string> = {}) {
  const text = (await request(server).get('/metrics').expect(200)).text;
  return metricValue(text, name, labels);
}

/** A promise held open until the test says: a handler waits on it at a known point. */
function gate(): { open: () => void; opened: Promise<void> } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { open, opened };
}

/** A worker whose app_mention handler records its runs, waiting for `until` when given. */
async function workerApp(until?: Promise<void>, fail?: () => boolean) {
  const ran: string[] = [];
  const started: string[] = [];
  const handlers = new SlackHandlers().onEvent('app_mention', async (event) => {
    started.push(event.text);
    await until;
    if (fail?.() === true) throw new TypeError('handler failed');
    ran.push(event.text);
  });
  const worker = await harness({ target: 'slackWorker', slackHandlers: handlers, env: env() });
  return { ...worker, ran, started };
}

describe('slackDeadLetter: dead letters that cannot do harm', () => {
  itWithPostgres(
    'a forged dead letter during a live claim: the handler runs once and the row ends done',
    async () => {
      const finish = gate();
      const worker = await workerApp(finish.opened);
      const dead = await deadLetterApp();
      const answer = deliver(worker.server, slackEvent('Live1'));
      await eventually(() => worker.started.length === 1);

      expect(await deliver(dead.server, deadLetter(slackEvent('Live1', 'forged')))).toBe(204);
      // The claim and its state are the worker's still; a redelivery finds it busy.
      expect(await rows()).toEqual([
        expect.objectContaining({ id: 'Live1', state: 'claimed', claimed_by: expect.any(String) }),
      ]);
      expect(await deliver(worker.server, slackEvent('Live1'))).toBe(409);
      expect(await metric(dead.server, 'coffeebuddy_slack_dead_events')).toBe(0);

      finish.open();
      expect(await answer).toBe(204);
      expect(worker.ran).toEqual(['Live1']);
      expect(worker.started).toEqual(['Live1']);
      expect(await rows()).toEqual([
        expect.objectContaining({
          id: 'Live1',
          state: 'done',
          attempts: 1,
          dead_at: null,
          event_data: null,
        }),
      ]);
      expect(dead.logs).toContainEqual(
        expect.objectContaining({ msg: 'slack event dead-lettered', id: 'Live1', held: true }),
      );
    },
  );

  itWithPostgres(
    'a dead letter while a worker holds the event, and that attempt fails: dead, with the event',
    async () => {
      const finish = gate();
      const worker = await workerApp(finish.opened, () => true);
      const dead = await deadLetterApp();
      const answer = deliver(worker.server, slackEvent('Held1'));
      await eventually(() => worker.started.length === 1);
      expect(await deliver(dead.server, deadLetter(slackEvent('Held1')))).toBe(204);
      finish.open();
      expect(await answer).toBe(500);
      const [row] = await rows();
      expect(row).toMatchObject({ id: 'Held1', state: 'dead', claimed_by: null });
      expect(JSON.parse(String(row!.event_data))).toEqual(slackEvent('Held1').data);
      expect(await metric(dead.server, 'coffeebuddy_slack_dead_events')).toBe(1);
    },
  );

  itWithPostgres(
    'a dead letter for a done event: ignored, counted, the row unchanged',
    async () => {
      await cluster()!.admin(
        `INSERT INTO slack_work (source, id, type, state, attempts, done_at)
       VALUES ('${SOURCE}', 'Done1', 'com.slack.event.app_mention', 'done', 1, now())`,
        'coffeebuddy',
      );
      const dead = await deadLetterApp();
      expect(await deliver(dead.server, deadLetter(slackEvent('Done1')))).toBe(204);
      expect(await rows()).toEqual([
        expect.objectContaining({ state: 'done', dead_at: null, event_data: null }),
      ]);
      const outcome = (name: string) =>
        metric(dead.server, 'coffeebuddy_slack_work_total', { kind: 'events', outcome: name });
      expect(await outcome('ignored')).toBe(1);
      expect(await outcome('dead_lettered')).toBe(0);
      expect(dead.logs).not.toContainEqual(
        expect.objectContaining({ msg: 'slack event dead-lettered' }),
      );
    },
  );

  itWithPostgres('a type other than com.slack.: 400, nothing recorded', async () => {
    const dead = await deadLetterApp();
    const other = new CloudEvent({ id: 'Other1', source: SOURCE, type: 'com.example.x', data: {} });
    expect(await deliver(dead.server, deadLetter(other))).toBe(400);
    const interaction = new CloudEvent({
      id: 'Other2',
      source: SOURCE,
      type: 'com.slack.other',
      data: {},
    });
    expect(await deliver(dead.server, interaction)).toBe(400);
    expect(await rows()).toEqual([]);
    expect(
      await metric(dead.server, 'coffeebuddy_slack_work_total', {
        kind: 'unknown',
        outcome: 'invalid',
      }),
    ).toBe(2);
  });

  itWithPostgres(
    'keeps the event with its row: attributes without Knative’s, data within its bound',
    async () => {
      const dead = await deadLetterApp({ SLACK_MAX_BODY_BYTES: '1024' });
      expect(await deliver(dead.server, deadLetter(slackEvent('Kept1', 'with\u0000nul')))).toBe(
        204,
      );
      // 1e20 grows from 5 bytes to 21 once parsed and written again: past the worker's limit.
      const numbers = `[${Array.from({ length: 3000 }, () => '1e20').join(',')}]`;
      const body = `{"type":"event_callback","event":{"type":"app_mention","text":"big","n":${numbers}}}`;
      const headers = HTTP.binary(deadLetter(slackEvent('Kept2'))).headers as Record<
        string,
        string
      >;
      await request(dead.server).post('/').set(headers).send(body).expect(204);
      const [kept, big] = await rows();
      expect(JSON.parse(String(kept!.event_data))).toEqual(
        slackEvent('Kept1', 'with\u0000nul').data,
      );
      const attributes = JSON.parse(String(kept!.event_attributes)) as Record<string, string>;
      expect(attributes).toMatchObject({ cluster: 'prod', datacontenttype: 'application/json' });
      expect(Object.keys(attributes).filter((name) => name.startsWith('knative'))).toEqual([]);
      expect(big).toMatchObject({ id: 'Kept2', state: 'dead', event_data: null });
      expect(dead.logs).toContainEqual(
        expect.objectContaining({ msg: 'slack event dead-lettered', id: 'Kept2', dataKept: false }),
      );
    },
  );

  itWithPostgres(
    'dead rows bounded by SLACK_DEAD_MAX_ROWS: 20 forged dead letters keep the newest 5, 15 counted',
    async () => {
      const dead = await deadLetterApp({ SLACK_DEAD_MAX_ROWS: '5' });
      const ids = Array.from({ length: 20 }, (_, i) => `Cap${String(i).padStart(2, '0')}`);
      for (const id of ids)
        expect(await deliver(dead.server, deadLetter(slackEvent(id)))).toBe(204);
      // The sweep runs after the answers: it is done once no row beyond the cap is left.
      await eventually(async () => (await rows()).length === 5, 10_000);
      expect((await rows()).map((row) => row.id)).toEqual(ids.slice(15));
      expect(
        await metric(dead.server, 'coffeebuddy_slack_dead_removed_total', { reason: 'over_cap' }),
      ).toBe(15);
      expect(dead.logs).toContainEqual(
        expect.objectContaining({ msg: 'slack dead letters over the cap', maxRows: 5 }),
      );
    },
  );

  itWithPostgres(
    'dead and replayed rows past SLACK_DEAD_RETENTION_MS removed, counted; others stay',
    async () => {
      await cluster()!.admin(
        `INSERT INTO slack_work (source, id, type, state, dead_at, done_at) VALUES
           ('${SOURCE}', 'OldDead', 'com.slack.event.app_mention', 'dead', now() - interval '2 hours', NULL),
           ('${SOURCE}', 'OldReplayed', 'com.slack.event.app_mention', 'replayed', now() - interval '2 hours', NULL),
           ('${SOURCE}', 'RecentDead', 'com.slack.event.app_mention', 'dead', now() - interval '10 minutes', NULL),
           ('${SOURCE}', 'OldDone', 'com.slack.event.app_mention', 'done', NULL, now() - interval '2 hours')`,
        'coffeebuddy',
      );
      const dead = await deadLetterApp({ SLACK_DEAD_RETENTION_MS: '3600000' });
      expect(await deliver(dead.server, deadLetter(slackEvent('NewDead')))).toBe(204);
      const ids = async () => (await rows()).map((row) => row.id);
      await eventually(async () => !(await ids()).includes('OldDead'), 10_000);
      expect(await ids()).toEqual(['NewDead', 'OldDone', 'RecentDead']);
      expect(
        await metric(dead.server, 'coffeebuddy_slack_dead_removed_total', { reason: 'expired' }),
      ).toBe(2);
      expect(await metric(dead.server, 'coffeebuddy_slack_dead_events')).toBe(2);
    },
  );
});

describe('the dead-letter gauge', () => {
  itWithPostgres(
    'on a fresh pod: 0 dead, 0 removed, promtool clean; NaN (unknown), never a failed scrape, while PostgreSQL is down',
    async () => {
      // The default connect timeout while PostgreSQL is up: a loaded machine may take longer than
      // a short one to connect, and the gauge would read NaN (unknown) instead of 0.
      const dead = await deadLetterApp();
      const text = (await request(dead.server).get('/metrics').expect(200)).text;
      expect(metricValue(text, 'coffeebuddy_slack_dead_events')).toBe(0);
      for (const reason of ['expired', 'over_cap']) {
        expect(metricValue(text, 'coffeebuddy_slack_dead_removed_total', { reason })).toBe(0);
      }
      if (findCommand('promtool') !== undefined) expect(promtoolCheckMetrics(text).status).toBe(0);

      const down = await deadLetterApp({ PG_CONNECT_TIMEOUT_MS: '300' });
      await cluster()!.stop();
      try {
        const scrape = await request(down.server).get('/metrics').expect(200);
        expect(metricValue(scrape.text, 'coffeebuddy_slack_dead_events')).toBeNaN();
        if (findCommand('promtool') !== undefined) {
          expect(promtoolCheckMetrics(scrape.text).status).toBe(0);
        }
      } finally {
        await cluster()!.start();
      }
      expect(down.logs).toContainEqual(
        expect.objectContaining({ level: 'warn', msg: 'slack dead letters not counted' }),
      );
    },
    30_000,
  );
});

describe('replaying dead events to a sink', () => {
  let sink: Sink | undefined;
  let db: PostgresClient | undefined;
  afterEach(async () => {
    await sink?.close();
    await db?.close();
    sink = undefined;
    db = undefined;
  });

  /** Dead-letters the events through the function, as Knative would. */
  async function deadEvents(events: CloudEvent<unknown>[]) {
    const dead = await deadLetterApp();
    for (const event of events) expect(await deliver(dead.server, deadLetter(event))).toBe(204);
    return dead;
  }

  function replayOptions(publish: boolean): ReplayOptions & { lines: string[] } {
    const settings = loadSettings(env());
    const logger = createLogger('error');
    db = buildPostgresClient(settings, {
      vault: new FakeClient(),
      logger,
      registry: new Registry(),
    });
    const lines: string[] = [];
    const publisher = publish
      ? new CloudEventPublisher({
          sink: sink!.url,
          extensions: {},
          timeoutMs: 2000,
          logger,
          observe: () => undefined,
        })
      : undefined;
    return {
      store: new DeadLetterStore(db),
      publisher,
      batchSize: 2,
      maxFailures: 10,
      print: (line) => lines.push(line),
      lines,
    };
  }

  const interaction = new CloudEvent({
    id: 'sha256:abc',
    source: SOURCE,
    type: 'com.slack.interaction.block_actions',
    datacontenttype: 'application/json',
    data: { type: 'block_actions', actions: [] },
  });

  itWithPostgres(
    'by type, by id, then all, in batches: the same events published again, marked replayed',
    async () => {
      sink = await startSink();
      const events = ['R1', 'R2', 'R3'].map((id) => slackEvent(id));
      const dead = await deadEvents([...events, interaction]);
      const options = replayOptions(true);
      try {
        expect(
          await replayDeadEvents({ type: 'com.slack.interaction.block_actions' }, options),
        ).toEqual({ replayed: 1, failed: 0, stopped: false });
        expect(await replayDeadEvents({ ids: ['R2'] }, options)).toEqual({
          replayed: 1,
          failed: 0,
          stopped: false,
        });
        expect(await replayDeadEvents({}, options)).toEqual({
          replayed: 2,
          failed: 0,
          stopped: false,
        });
        // Nothing is dead any more: a second run publishes nothing.
        expect(await replayDeadEvents({}, options)).toEqual({
          replayed: 0,
          failed: 0,
          stopped: false,
        });
      } finally {
        options.publisher?.close();
      }
      const published = sink.events();
      expect(published.map((e) => e.id)).toEqual(['sha256:abc', 'R2', 'R1', 'R3']);
      const r1 = published.find((e) => e.id === 'R1')!;
      expect(r1).toMatchObject({
        source: SOURCE,
        type: 'com.slack.event.app_mention',
        cluster: 'prod',
        data: events[0]!.data,
      });
      expect(Object.keys(r1).filter((name) => name.startsWith('knative'))).toEqual([]);
      expect(options.lines).toContain(`replayed com.slack.event.app_mention ${SOURCE} R2`);
      expect(await rows()).toEqual(
        ['R1', 'R2', 'R3', 'sha256:abc'].map((id) =>
          expect.objectContaining({ id, state: 'replayed', replays: 1 }),
        ),
      );
      expect(await metric(dead.server, 'coffeebuddy_slack_dead_events')).toBe(0);

      // The worker claims a replayed event and does it once.
      const worker = await workerApp();
      expect(await deliver(worker.server, r1)).toBe(204);
      expect(await deliver(worker.server, r1)).toBe(204);
      expect(worker.ran).toEqual(['R1']);
      expect((await rows())[0]).toMatchObject({ id: 'R1', state: 'done', attempts: 1 });
    },
  );

  itWithPostgres(
    'a sink that refuses, and data not kept: failed, said, left dead; a dry run publishes nothing',
    async () => {
      sink = await startSink({ kind: 'status', status: 503 });
      await deadEvents([slackEvent('F1'), slackEvent('F2')]);
      await cluster()!.admin(
        `UPDATE slack_work SET event_data = NULL WHERE id = 'F2'`,
        'coffeebuddy',
      );
      const dry = replayOptions(false);
      expect(await replayDeadEvents({}, dry)).toEqual({ replayed: 1, failed: 1, stopped: false });
      expect(dry.lines).toEqual([
        `would replay com.slack.event.app_mention ${SOURCE} F1`,
        `failed com.slack.event.app_mention ${SOURCE} F2: its data was not kept`,
      ]);
      expect(sink.received).toEqual([]);
      await db!.close();

      const options = replayOptions(true);
      try {
        expect(await replayDeadEvents({}, { ...options, maxFailures: 1 })).toEqual({
          replayed: 0,
          failed: 1,
          stopped: true,
        });
      } finally {
        options.publisher?.close();
      }
      expect(options.lines).toEqual([
        `failed com.slack.event.app_mention ${SOURCE} F1: status 503`,
      ]);
      expect((await rows()).map((row) => row.state)).toEqual(['dead', 'dead']);
    },
  );
});
