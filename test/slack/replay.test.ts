import { Registry } from 'prom-client';
import { buildPostgresClient, type PostgresClient } from '../../lib/clients/postgres';
import { loadSettings } from '../../lib/config/settings';
import { CloudEventPublisher } from '../../lib/eventing/publisher';
import { createLogger } from '../../lib/logger';
import { DeadLetterStore, type DeadEvent } from '../../lib/slack/dead-store';
import { replayDeadEvents, type ReplayOptions } from '../../lib/slack/replay';
import { FakeClient } from '../../testing/fakes';
import { APP_PASSWORD, itWithPostgres, migratedCluster } from '../../testing/postgres';
import { startSink, type Sink } from '../../testing/sink';

/**
 * replayDeadEvents on a real PostgreSQL with the repository's migrations and the K_SINK stand-in:
 * what a stored dead event is published as (its data as kept, its extensions and nothing else),
 * which ones cannot be and why, and where a run stops. test/slack-dead-letters.test.ts replays
 * events the dead-letter function recorded; here the rows are the store's, as odd as they come.
 */

const cluster = migratedCluster(['slack_work']);
const SOURCE = 'https://slack.com/teams/T0001';
const TYPE = 'com.slack.event.app_mention';

let db: PostgresClient | undefined;
let sink: Sink | undefined;
let publisher: CloudEventPublisher | undefined;
afterEach(async () => {
  publisher?.close();
  await sink?.close();
  await db?.close();
  [db, sink, publisher] = [undefined, undefined, undefined];
});

function store(): DeadLetterStore {
  const settings = loadSettings(cluster()!.env({ PGPASSWORD: APP_PASSWORD }));
  db = buildPostgresClient(settings, {
    vault: new FakeClient(),
    logger: createLogger('error'),
    registry: new Registry(),
  });
  return new DeadLetterStore(db);
}

/** Dead events as the store keeps them, by id. */
async function dead(deadStore: DeadLetterStore, events: Record<string, DeadEvent>): Promise<void> {
  for (const [id, event] of Object.entries(events)) {
    await deadStore.markDead({ source: SOURCE, id }, TYPE, '500', 'http://worker', event);
  }
}

async function options(
  deadStore: DeadLetterStore,
  overrides: Partial<ReplayOptions> = {},
): Promise<ReplayOptions & { lines: string[] }> {
  sink = await startSink();
  publisher = new CloudEventPublisher({
    sink: sink.url,
    extensions: {},
    timeoutMs: 2000,
    logger: createLogger('error'),
    observe: () => undefined,
  });
  const lines: string[] = [];
  return {
    store: deadStore,
    publisher,
    batchSize: 2,
    maxFailures: 10,
    print: (line) => lines.push(line),
    lines,
    ...overrides,
  };
}

const DATA = '{"type":"event_callback","event":{"type":"app_mention"}}';

describe('replayDeadEvents', () => {
  itWithPostgres(
    'publishes the data as kept and its extensions, never an attribute the publisher sets',
    async () => {
      const deadStore = store();
      await dead(deadStore, {
        A1: {
          data: DATA,
          attributes: JSON.stringify({
            cluster: 'prod',
            slackretrynum: '2',
            datacontenttype: 'text/plain',
            dataschema: 'https://example.com/schema',
            subject: 'a subject',
            time: '2020-01-01T00:00:00.000Z',
            Upper: 'not an extension name',
            'with-dash': 'not one either',
            abcdefghijklmnopqrstu: 'one character too long',
            number: 7,
          }),
        },
        A2: { data: DATA, attributes: null },
      });
      const run = await options(deadStore);
      expect(await replayDeadEvents({}, run)).toEqual({ replayed: 2, failed: 0, stopped: false });
      const [a1, a2] = sink!.events();
      expect(a1).toMatchObject({ id: 'A1', source: SOURCE, type: TYPE, cluster: 'prod' });
      expect(a1!.slackretrynum).toBe('2');
      const sent = Object.entries(a1!)
        .filter(([name, value]) => value !== undefined && !['data', 'data_base64'].includes(name))
        .map(([name]) => name);
      expect(sent.sort()).toEqual(
        [
          'cluster',
          'datacontenttype',
          'id',
          'slackretrynum',
          'source',
          'specversion',
          'time',
          'type',
        ].sort(),
      );
      expect(a1!.datacontenttype).toBe('application/json');
      expect(a1!.time).not.toBe('2020-01-01T00:00:00.000Z');
      expect(sink!.received[0]!.body).toBe(DATA);
      expect(a2).toMatchObject({ id: 'A2', data: JSON.parse(DATA) });
      expect(Object.keys(a2!)).not.toContain('cluster');
      expect(run.lines).toEqual([`replayed ${TYPE} ${SOURCE} A1`, `replayed ${TYPE} ${SOURCE} A2`]);
    },
  );

  itWithPostgres(
    'says why each event that cannot be published is not, and leaves it dead',
    async () => {
      const deadStore = store();
      await dead(deadStore, {
        B1: { data: null, attributes: null },
        B2: { data: 'not json', attributes: null },
        B3: { data: 'null', attributes: null },
        B4: { data: '[{"type":"app_mention"}]', attributes: null },
        B5: { data: '7', attributes: null },
        B6: { data: DATA, attributes: '{not json' },
        B7: { data: DATA, attributes: 'null' },
        B8: { data: DATA, attributes: '"cluster"' },
      });
      const run = await options(deadStore);
      expect(await replayDeadEvents({}, run)).toEqual({ replayed: 0, failed: 8, stopped: false });
      const failed = (id: string, reason: string) => `failed ${TYPE} ${SOURCE} ${id}: ${reason}`;
      expect(run.lines).toEqual([
        failed('B1', 'its data was not kept'),
        failed('B2', 'its data is not JSON'),
        failed('B3', 'its data is not a JSON object'),
        failed('B4', 'its data is not a JSON object'),
        failed('B5', 'its data is not a JSON object'),
        failed('B6', 'its attributes are not JSON'),
        failed('B7', 'its attributes are not a JSON object'),
        failed('B8', 'its attributes are not a JSON object'),
      ]);
      expect(sink!.received).toEqual([]);
      expect(await deadStore.countDead()).toBe(8);
    },
  );

  itWithPostgres(
    'a sink that refuses: failed with its reason, left dead; a dry run sends nothing',
    async () => {
      const deadStore = store();
      await dead(deadStore, { E1: { data: DATA, attributes: null } });
      const dry = await options(deadStore, { publisher: undefined });
      expect(await replayDeadEvents({}, dry)).toEqual({ replayed: 1, failed: 0, stopped: false });
      expect(dry.lines).toEqual([`would replay ${TYPE} ${SOURCE} E1`]);
      expect(sink!.received).toEqual([]);
      sink!.answer = { kind: 'status', status: 503 };
      const run = { ...dry, publisher, lines: [] as string[] };
      run.print = (line) => run.lines.push(line);
      expect(await replayDeadEvents({}, run)).toEqual({ replayed: 0, failed: 1, stopped: false });
      expect(run.lines).toEqual([`failed ${TYPE} ${SOURCE} E1: status 503`]);
      expect(await deadStore.countDead()).toBe(1);
    },
  );

  itWithPostgres('reads batch after batch until one is short, each event once', async () => {
    const deadStore = store();
    const ids = ['C1', 'C2', 'C3', 'C4', 'C5'];
    await dead(
      deadStore,
      Object.fromEntries(ids.map((id) => [id, { data: DATA, attributes: null }])),
    );
    const run = await options(deadStore, { batchSize: 2 });
    expect(await replayDeadEvents({}, run)).toEqual({ replayed: 5, failed: 0, stopped: false });
    expect(sink!.events().map((event) => event.id)).toEqual(ids);
    expect(await deadStore.countDead()).toBe(0);
  });

  itWithPostgres('stops at exactly maxFailures, the events after it untried', async () => {
    const deadStore = store();
    await dead(deadStore, {
      D1: { data: null, attributes: null },
      D2: { data: DATA, attributes: null },
      D3: { data: null, attributes: null },
      D4: { data: null, attributes: null },
      D5: { data: DATA, attributes: null },
    });
    const run = await options(deadStore, { maxFailures: 2 });
    expect(await replayDeadEvents({}, run)).toEqual({ replayed: 1, failed: 2, stopped: true });
    expect(sink!.events().map((event) => event.id)).toEqual(['D2']);
    expect(run.lines).toHaveLength(3);
  });
});
