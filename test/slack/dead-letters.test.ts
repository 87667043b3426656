import { Client } from 'pg';
import { Registry } from 'prom-client';
import type { PostgresClient } from '../../lib/clients/postgres';
import type { ReceivedEvent } from '../../lib/eventing/event';
import { Lifecycle } from '../../lib/lifecycle';
import { DeadDepth } from '../../lib/slack/dead-depth';
import { DeadLetters } from '../../lib/slack/dead-letters';
import { createDeadLetterMetrics } from '../../lib/slack/dead-metrics';
import { DeadLetterStore } from '../../lib/slack/dead-store';
import { createWorkMetrics } from '../../lib/slack/work-metrics';
import { metricValue } from '../../testing/metrics-text';
import {
  APP_DATABASE,
  APP_PASSWORD,
  appDatabase,
  APP_ROLE,
  itWithPostgres,
  migratedCluster,
} from '../../testing/postgres';
import { eventually } from '../../testing/tools';

/**
 * DeadLetters itself on a real PostgreSQL with the repository's migrations: what each dead letter
 * becomes (the answer Knative reads, the row, the event kept, the log line, the counters) and the
 * dead rows' bounds, without the HTTP function in front (test/slack-dead-letters.test.ts has it).
 */

const cluster = migratedCluster(['slack_work']);
const SOURCE = 'https://slack.com/teams/T0001';

interface Built {
  deadLetters: DeadLetters;
  store: DeadLetterStore;
  db: PostgresClient;
  lifecycle: Lifecycle;
  registry: Registry;
  lines: Record<string, unknown>[];
}
const opened: Built[] = [];
afterEach(async () => {
  await Promise.all(
    opened.splice(0).map(async ({ deadLetters, lifecycle, db }) => {
      await deadLetters.close();
      await lifecycle.idle(5000);
      await db.close().catch(() => undefined);
    }),
  );
});

function build(
  options: { maxRows?: number; retentionMs?: number; maxDataBytes?: number } = {},
  env: NodeJS.ProcessEnv = {},
): Built {
  const { db, logger, lines, registry } = appDatabase(cluster()!, env);
  const store = new DeadLetterStore(db);
  const lifecycle = new Lifecycle();
  // As the app reads it: NaN while PostgreSQL is unreachable, never a failed scrape.
  const depth = new DeadDepth({
    count: () => store.countDead(),
    ttlMs: 0,
    timeoutMs: 2000,
    logger,
  });
  const deadLetters = new DeadLetters({
    store,
    logger,
    metrics: createWorkMetrics(registry),
    deadMetrics: createDeadLetterMetrics(registry, () => depth.read()),
    lifecycle,
    retentionMs: options.retentionMs ?? 24 * 3600_000,
    maxRows: options.maxRows ?? 100,
    maxDataBytes: options.maxDataBytes ?? 1024,
  });
  const built = { deadLetters, store, db, lifecycle, registry, lines };
  opened.push(built);
  return built;
}

/** A dead letter as Knative delivers it: the event, with its error extensions. */
function deadLetter(id: string, attributes: Record<string, string> = {}, data: unknown = {}) {
  return {
    id,
    source: SOURCE,
    type: 'com.slack.event.app_mention',
    data,
    attributes: {
      knativeerrorcode: '500',
      knativeerrordest: 'http://worker',
      ...attributes,
    },
  } satisfies ReceivedEvent;
}

function rows(): Promise<Record<string, unknown>[]> {
  return cluster()!.admin(
    `SELECT id, state, claimed_by, error_code, error_dest, event_attributes, event_data
       FROM slack_work ORDER BY id`,
    'coffeebuddy',
  );
}

const workCount = async (registry: Registry, outcome: string, kind = 'events') =>
  metricValue(await registry.metrics(), 'coffeebuddy_slack_work_total', { kind, outcome });
const removedCount = async (registry: Registry, reason: string) =>
  metricValue(await registry.metrics(), 'coffeebuddy_slack_dead_removed_total', { reason });

describe('DeadLetters.handle', () => {
  itWithPostgres(
    'records a Slack event dead with Knative’s error and the event itself',
    async () => {
      const { deadLetters, registry, lines } = build();
      const event = deadLetter('Ev1', { traceparent: 'tp', slackretrynum: '1' }, { a: 1 });
      expect(await deadLetters.handle(event)).toEqual({ outcome: 'dead_lettered', status: 204 });
      expect(await rows()).toEqual([
        {
          id: 'Ev1',
          state: 'dead',
          claimed_by: null,
          error_code: '500',
          error_dest: 'http://worker',
          event_attributes: '{"traceparent":"tp","slackretrynum":"1"}',
          event_data: '{"a":1}',
        },
      ]);
      expect(lines.filter((line) => line.msg === 'slack event dead-lettered')).toEqual([
        {
          level: 'error',
          time: expect.any(String),
          msg: 'slack event dead-lettered',
          id: 'Ev1',
          type: 'com.slack.event.app_mention',
          source: SOURCE,
          errorCode: '500',
          errorDest: 'http://worker',
          dataKept: true,
        },
      ]);
      expect(await workCount(registry, 'dead_lettered')).toBe(1);
    },
  );

  itWithPostgres(
    'Knative’s error unsaid: `unknown`; said at length: 512 characters kept',
    async () => {
      const { deadLetters } = build();
      const bare = { ...deadLetter('Ev2'), attributes: {} };
      await deadLetters.handle(bare);
      await deadLetters.handle(deadLetter('Ev3', { knativeerrordest: 'd'.repeat(600) }));
      expect((await rows()).map((row) => [row.id, row.error_code, row.error_dest])).toEqual([
        ['Ev2', 'unknown', 'unknown'],
        ['Ev3', '500', 'd'.repeat(512)],
      ]);
    },
  );

  itWithPostgres(
    'the event is kept within its bounds: data up to maxDataBytes, attributes up to 8 KiB',
    async () => {
      const { deadLetters, lines } = build({ maxDataBytes: 20 });
      // '"' + 18 characters + '"': 20 bytes of JSON; one more passes the bound.
      await deadLetters.handle(deadLetter('Ev4', {}, 'x'.repeat(18)));
      await deadLetters.handle(deadLetter('Ev5', {}, 'x'.repeat(19)));
      await deadLetters.handle({ ...deadLetter('Ev6'), data: undefined });
      // {"big":"…"}: 10 bytes around the value.
      await deadLetters.handle(deadLetter('Ev7', { big: 'b'.repeat(8192 - 10) }));
      await deadLetters.handle(deadLetter('Ev8', { big: 'b'.repeat(8192 - 9) }));
      const kept = (await rows()).map((row) => [
        row.id,
        row.event_data === null ? null : (row.event_data as string).length,
        row.event_attributes === null ? null : (row.event_attributes as string).length,
      ]);
      expect(kept).toEqual([
        ['Ev4', 20, 2],
        ['Ev5', null, 2],
        ['Ev6', null, 2],
        ['Ev7', 2, 8192],
        ['Ev8', 2, null],
      ]);
      expect(
        lines
          .filter((line) => line.msg === 'slack event dead-lettered')
          .map((line) => line.dataKept),
      ).toEqual([true, false, false, true, true]);
    },
  );

  itWithPostgres('a type that is not Slack’s: 400, nothing recorded, said why', async () => {
    const { deadLetters, registry, lines } = build();
    const other = { ...deadLetter('Other'), type: 'com.example.x' };
    expect(await deadLetters.handle(other)).toEqual({
      outcome: 'invalid',
      status: 400,
      error: 'not a Slack event type',
    });
    expect(await rows()).toEqual([]);
    expect(await workCount(registry, 'invalid', 'unknown')).toBe(1);
    expect(lines).toEqual([
      expect.objectContaining({
        level: 'warn',
        msg: 'slack dead letter refused',
        id: 'Other',
        type: 'com.example.x',
        reason: 'not a Slack event type',
      }),
    ]);
  });

  itWithPostgres('a done event: 204 ignored, unchanged, said', async () => {
    const { deadLetters, registry, lines } = build();
    await cluster()!.admin(
      `INSERT INTO slack_work (source, id, type, state, done_at)
       VALUES ('${SOURCE}', 'Done', 'com.slack.event.app_mention', 'done', now())`,
      'coffeebuddy',
    );
    expect(await deadLetters.handle(deadLetter('Done'))).toEqual({
      outcome: 'ignored',
      status: 204,
    });
    expect(await rows()).toEqual([expect.objectContaining({ state: 'done', error_code: null })]);
    expect(await workCount(registry, 'ignored')).toBe(1);
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: 'warn',
        msg: 'slack dead letter ignored',
        id: 'Done',
        reason: 'done',
      }),
    );
  });

  itWithPostgres(
    'an event a worker holds: its claim left alone, the letter kept, said held',
    async () => {
      const { deadLetters, lines } = build();
      await cluster()!.admin(
        `INSERT INTO slack_work (source, id, type, state, attempts, claimed_by, lease_until) VALUES
         ('${SOURCE}', 'Held', 'com.slack.event.app_mention', 'claimed', 1, 'w1', now() + interval '1 hour'),
         ('${SOURCE}', 'Ended', 'com.slack.event.app_mention', 'claimed', 1, 'w2', now() - interval '1 second')`,
        'coffeebuddy',
      );
      expect((await deadLetters.handle(deadLetter('Held'))).outcome).toBe('dead_lettered');
      await deadLetters.handle(deadLetter('Ended'));
      expect(await rows()).toEqual([
        expect.objectContaining({
          id: 'Ended',
          state: 'dead',
          claimed_by: null,
          error_code: '500',
        }),
        expect.objectContaining({
          id: 'Held',
          state: 'claimed',
          claimed_by: 'w1',
          error_code: '500',
        }),
      ]);
      const said = lines.filter((line) => line.msg === 'slack event dead-lettered');
      expect(said.map((line) => [line.id, line.held])).toEqual([
        ['Held', true],
        ['Ended', undefined],
      ]);
    },
  );

  itWithPostgres('PostgreSQL unreachable: 503 (Knative retries), counted unavailable', async () => {
    const { deadLetters, registry, lines } = build({}, { PGPORT: '1' });
    expect(await deadLetters.handle(deadLetter('Ev9'))).toEqual({
      outcome: 'unavailable',
      status: 503,
      error: 'database unavailable',
    });
    expect(await workCount(registry, 'unavailable')).toBe(1);
    expect(await workCount(registry, 'dead_lettered')).toBe(0);
    expect(lines).toContainEqual(
      expect.objectContaining({ level: 'warn', msg: 'slack dead letter not recorded', id: 'Ev9' }),
    );
  });
});

describe('DeadLetters: the bounds on dead rows', () => {
  const oldDead = (count: number, state = 'dead', age = "interval '2 days'") =>
    cluster()!.admin(
      `INSERT INTO slack_work (source, id, type, state, dead_at)
       SELECT '${SOURCE}', '${state}' || n, 'com.slack.event.app_mention', '${state}', now() - ${age} - n * interval '1 second'
         FROM generate_series(1, ${count}) AS n`,
      'coffeebuddy',
    );

  itWithPostgres(
    'after a dead letter, rows past the retention are removed, each batch of 1,000 followed by another',
    async () => {
      const { deadLetters, lifecycle, registry, lines } = build({
        retentionMs: 24 * 3600_000,
        maxRows: 10_000,
      });
      await oldDead(2500);
      await oldDead(1, 'replayed');
      await oldDead(1, 'released');
      await deadLetters.handle(deadLetter('Fresh'));
      expect(await lifecycle.idle(20_000)).toBe(true);
      expect((await rows()).map((row) => row.id)).toEqual(['Fresh', 'released1']);
      expect(await removedCount(registry, 'expired')).toBe(2501);
      expect(await removedCount(registry, 'over_cap')).toBe(0);
      const expired = lines.filter((line) => line.msg === 'slack dead letters expired');
      expect(expired.map((line) => line.removed)).toEqual([1000, 1000, 501]);
      expect(expired[0]).toMatchObject({ level: 'info' });
    },
    30_000,
  );

  itWithPostgres('beyond maxRows, the oldest are removed, said louder', async () => {
    const { deadLetters, lifecycle, registry, lines } = build({ maxRows: 2 });
    await oldDead(3, 'dead', "interval '1 minute'");
    await deadLetters.handle(deadLetter('Fresh'));
    expect(await lifecycle.idle(5000)).toBe(true);
    expect((await rows()).map((row) => row.id)).toEqual(['Fresh', 'dead1']);
    expect(await removedCount(registry, 'over_cap')).toBe(2);
    expect(await removedCount(registry, 'expired')).toBe(0);
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: 'warn',
        msg: 'slack dead letters over the cap',
        removed: 2,
        maxRows: 2,
      }),
    );
    expect(lines.some((line) => line.msg === 'slack dead letters expired')).toBe(false);
  });

  itWithPostgres('the gauge: dead events not replayed, held by no live claim', async () => {
    const { registry } = build();
    await oldDead(2, 'dead', "interval '1 minute'");
    await oldDead(1, 'replayed', "interval '1 minute'");
    await cluster()!.admin(
      `INSERT INTO slack_work (source, id, type, state, claimed_by, lease_until, dead_at) VALUES
         ('${SOURCE}', 'Live', 'com.slack.event.app_mention', 'claimed', 'w', now() + interval '1 hour', now()),
         ('${SOURCE}', 'Ended', 'com.slack.event.app_mention', 'claimed', 'w', now() - interval '1 second', now())`,
      'coffeebuddy',
    );
    expect(metricValue(await registry.metrics(), 'coffeebuddy_slack_dead_events')).toBe(3);
  });
});

describe('DeadLetters: the sweeps', () => {
  /** `count` dead rows, `id1` the newest, dead a minute ago or more (within the retention). */
  const dead = (count: number, prefix = 'dead') =>
    cluster()!.admin(
      `INSERT INTO slack_work (source, id, type, state, dead_at)
       SELECT '${SOURCE}', '${prefix}' || n, 'com.slack.event.app_mention', 'dead',
              now() - interval '1 minute' - n * interval '1 second'
         FROM generate_series(1, ${count}) AS n`,
      'coffeebuddy',
    );
  /** Sessions whose DELETE from slack_work waits on a lock. */
  const waitingDeletes = async () =>
    (
      await cluster()!.admin(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE wait_event_type = 'Lock' AND query LIKE 'DELETE FROM slack_work%'`,
      )
    )[0]!.n;
  const said = (lines: Record<string, unknown>[], msg: string) =>
    lines.filter((line) => line.msg === msg).map((line) => line.removed);

  itWithPostgres('a sweep that removes nothing says nothing', async () => {
    const { deadLetters, lifecycle, lines } = build();
    await deadLetters.handle(deadLetter('Ev1'));
    expect(await lifecycle.idle(5000)).toBe(true);
    expect(lines.map((line) => line.msg)).toEqual(['slack event dead-lettered']);
  });

  itWithPostgres(
    'beyond maxRows, each batch of 1,000 removed is followed by another',
    async () => {
      const { deadLetters, lifecycle, registry, lines } = build({ maxRows: 1 });
      await dead(2001);
      await deadLetters.handle(deadLetter('Fresh'));
      expect(await lifecycle.idle(20_000)).toBe(true);
      expect((await rows()).map((row) => row.id)).toEqual(['Fresh']);
      expect(said(lines, 'slack dead letters over the cap')).toEqual([1000, 1000, 1]);
      expect(await removedCount(registry, 'over_cap')).toBe(2001);
    },
    30_000,
  );

  itWithPostgres('each dead letter sweeps again once the sweep before it ended', async () => {
    const { deadLetters, lifecycle, lines } = build({ maxRows: 1 });
    await deadLetters.handle(deadLetter('A'));
    expect(await lifecycle.idle(5000)).toBe(true);
    await deadLetters.handle(deadLetter('B'));
    expect(await lifecycle.idle(5000)).toBe(true);
    expect((await rows()).map((row) => row.id)).toEqual(['B']);
    expect(said(lines, 'slack dead letters over the cap')).toEqual([1]);
  });

  itWithPostgres(
    'a dead letter during a sweep: no second sweep at once, one more when it ends',
    async () => {
      const { deadLetters, lifecycle, lines } = build({ maxRows: 1 });
      await dead(1, 'Old');
      // Another session holds Old: the sweep's delete of it waits until that session commits.
      const holder = new Client({
        host: cluster()!.host,
        port: cluster()!.port,
        user: APP_ROLE,
        password: APP_PASSWORD,
        database: APP_DATABASE,
      });
      await holder.connect();
      try {
        await holder.query('BEGIN');
        await holder.query(`SELECT 1 FROM slack_work WHERE id = 'Old1' FOR UPDATE`);
        await deadLetters.handle(deadLetter('A'));
        // The sweep A asked for waits on Old1 (over the cap: A is newer).
        await eventually(async () => (await waitingDeletes()) === 1, 10_000);
        expect(lifecycle.inFlight().work).toBe(1);
        await deadLetters.handle(deadLetter('B'));
        // One sweep at a time: B's waits for the one running (the drain waits for one).
        expect(lifecycle.inFlight().work).toBe(1);
        expect((await rows()).map((row) => row.id)).toEqual(['A', 'B', 'Old1']);
        await holder.query('COMMIT');
      } finally {
        await holder.end();
      }
      expect(await lifecycle.idle(10_000)).toBe(true);
      // The running sweep did not see B (it began before B came): the one after removed A.
      expect((await rows()).map((row) => row.id)).toEqual(['B']);
      expect(said(lines, 'slack dead letters over the cap')).toEqual([1, 1]);
    },
    30_000,
  );

  itWithPostgres('a sweep that fails: a warning saying why, the dead letter recorded', async () => {
    const { deadLetters, lifecycle, lines } = build({ maxRows: 1 });
    await dead(1);
    // Rows can be recorded but not deleted.
    await cluster()!.admin(`REVOKE DELETE ON slack_work FROM ${APP_ROLE}`, 'coffeebuddy');
    try {
      expect((await deadLetters.handle(deadLetter('Ev1'))).outcome).toBe('dead_lettered');
      expect(await lifecycle.idle(5000)).toBe(true);
    } finally {
      await cluster()!.admin(`GRANT DELETE ON slack_work TO ${APP_ROLE}`, 'coffeebuddy');
    }
    expect(lines.filter((line) => line.msg === 'slack dead letters not swept')).toEqual([
      expect.objectContaining({
        level: 'warn',
        // Said by the statement and PostgreSQL's code (insufficient privilege), never its text.
        reason: 'query dead_sweep_expired failed (SQLSTATE 42501)',
      }),
    ]);
    expect((await rows()).map((row) => row.id)).toEqual(['Ev1', 'dead1']);
  });

  itWithPostgres('dead rows are swept every minute, dead letters or not', async () => {
    // Only the interval's timers are the test's: PostgreSQL's and the drain's stay real.
    jest.useFakeTimers({
      doNotFake: [
        'Date',
        'hrtime',
        'nextTick',
        'performance',
        'queueMicrotask',
        'setImmediate',
        'clearImmediate',
        'setTimeout',
        'clearTimeout',
      ],
    });
    try {
      const { lifecycle, lines } = build({ maxRows: 1 });
      await dead(2);
      jest.advanceTimersByTime(59_999);
      expect(lifecycle.inFlight().work).toBe(0);
      jest.advanceTimersByTime(1);
      expect(lifecycle.inFlight().work).toBe(1);
      expect(await lifecycle.idle(5000)).toBe(true);
      expect((await rows()).map((row) => row.id)).toEqual(['dead1']);
      expect(said(lines, 'slack dead letters over the cap')).toEqual([1]);
    } finally {
      jest.useRealTimers();
    }
  });
});

describe('DeadLetterStore.deadEvents', () => {
  itWithPostgres('the first page starts before every source', async () => {
    const { store } = build();
    // A CloudEvents source is a URI-reference: a relative one sorts before `https:…`.
    for (const source of ['/slack', 'A', SOURCE]) {
      await store.markDead({ source, id: 'Ev1' }, 'com.slack.event.app_mention', '500', 'd', {
        attributes: null,
        data: null,
      });
    }
    expect((await store.deadEvents({}, 10)).map((event) => event.source)).toEqual([
      '/slack',
      'A',
      SOURCE,
    ]);
  });
});
