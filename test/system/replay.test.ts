import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CloudEvent, HTTP } from 'cloudevents';
import { startDeliverer, type Deliverer, type DeliverySpec } from '../../testing/deliverer';
import { metricValue } from '../../testing/metrics-text';
import { APP_PASSWORD, itWithPostgres, migratedCluster } from '../../testing/postgres';
import {
  ENTRY,
  requireBuild,
  runToExit,
  startProcess,
  startWorkerProcess,
  type RunningProcess,
} from '../../testing/process';

/**
 * Replay end to end, every part real but Knative's Broker (testing/deliverer.ts): an event a
 * worker fails every time is dead-lettered by the deliverer to the dead-letter function (the
 * built entry), which keeps it with its row in PostgreSQL; the handler is fixed (a second worker
 * that succeeds); `node dist/replay.cjs` publishes it again through the deliverer to that worker,
 * which does it once; the dead-letter gauge goes back to 0.
 */
let deliverer: Deliverer | undefined;
const processes: RunningProcess[] = [];
let runsFile = '';

const cluster = migratedCluster(['slack_work']);
beforeEach(() => {
  runsFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'coffeebuddy-runs-')), 'runs');
  fs.writeFileSync(runsFile, '');
});

afterEach(async () => {
  await deliverer?.close();
  deliverer = undefined;
  await Promise.all(processes.splice(0).map((p) => p.stop()));
  fs.rmSync(path.dirname(runsFile), { recursive: true, force: true });
}, 30_000);

const SOURCE = 'https://slack.com/teams/T0001';
const DELIVERY: Partial<DeliverySpec> = {
  retry: 2,
  backoffPolicy: 'exponential',
  backoffDelayMs: 20,
  timeoutMs: 5000,
};
/** The gauge's count is reused for 5 s (functions/app.ts): a change shows within that. */
const GAUGE_WAIT_MS = 15_000;

function env(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    ...cluster()!.env({ PGPASSWORD: APP_PASSWORD }),
    SLACK_HANDLER_TIMEOUT_MS: '1000',
    SLACK_WORK_LEASE_MS: '2000',
    WORK_RUNS_FILE: runsFile,
    ...extra,
  };
}

async function started(process: Promise<RunningProcess>): Promise<RunningProcess> {
  const running = await process;
  processes.push(running);
  return running;
}

/** The handler's finished runs: `end <text> <pid>` lines. */
function ends(): { text: string; pid: number }[] {
  return fs
    .readFileSync(runsFile, 'utf8')
    .split('\n')
    .filter((line) => line.startsWith('end '))
    .map((line) => {
      const [, text, pid] = line.split(' ');
      return { text: text!, pid: Number(pid) };
    });
}

async function publish(event: CloudEvent<unknown>): Promise<void> {
  const message = HTTP.binary(event);
  const res = await fetch(deliverer!.url, {
    method: 'POST',
    headers: message.headers as Record<string, string>,
    body: message.body as string,
    signal: AbortSignal.timeout(5000),
  });
  expect(res.status).toBe(202);
}

async function deadGauge(process: RunningProcess): Promise<number | undefined> {
  const res = await fetch(`${process.url}/metrics`, { signal: AbortSignal.timeout(5000) });
  return metricValue(await res.text(), 'coffeebuddy_slack_dead_events');
}

function rows(): Promise<Record<string, unknown>[]> {
  return cluster()!.admin(
    'SELECT id, state, attempts, error_code, event_data, replays FROM slack_work ORDER BY id',
    'coffeebuddy',
  );
}

describe('replaying dead letters, across processes', () => {
  itWithPostgres(
    'dead-lettered with its data, the handler fixed, replayed through the Broker: done once, the gauge back to 0',
    async () => {
      requireBuild();
      const failing = await started(startWorkerProcess(env({ WORK_HANDLER_FAILS: 'always' })));
      const deadLetter = await started(
        startProcess({
          args: [ENTRY],
          env: {
            NODE_ENV: 'test',
            LISTEN_HOST: '127.0.0.1',
            ...env(),
            FUNCTION_TARGET: 'slackDeadLetter',
          },
        }),
      );
      deliverer = await startDeliverer();
      const trigger = deliverer.addTrigger({
        url: 'http://coffeebuddy-slack-worker.coffeebuddy.svc.cluster.local',
        endpoints: [`${failing.url}/`],
        filter: (event) => event.type.startsWith('com.slack.'),
        delivery: { ...DELIVERY, deadLetterSink: `${deadLetter.url}/` },
      });
      const data = {
        type: 'event_callback',
        event_id: 'Replay1',
        event: { type: 'app_mention', text: 'Replay1' },
      };
      await publish(
        new CloudEvent({
          id: 'Replay1',
          source: SOURCE,
          type: 'com.slack.event.app_mention',
          datacontenttype: 'application/json',
          partitionkey: 'T0001',
          data,
        }),
      );
      await deliverer.waitForSettled(20_000);
      expect(deliverer.settlements.map((s) => s.outcome)).toEqual(['deadLettered']);
      const [dead] = await rows();
      expect(dead).toMatchObject({ id: 'Replay1', state: 'dead', attempts: 3, error_code: '500' });
      expect(JSON.parse(String(dead!.event_data))).toEqual(data);
      expect(await deadGauge(deadLetter)).toBe(1);

      // The Broker refusing: the replay says so, exits 1, and the event stays dead.
      const replayEnv = { ...env(), K_SINK: deliverer.url };
      await deliverer.setIngest('fail503');
      const refused = await runToExit(['dist/replay.cjs', '--all'], replayEnv);
      expect(refused.code).toBe(1);
      expect(refused.stdout).toBe(
        `failed com.slack.event.app_mention ${SOURCE} Replay1: status 503\nreplayed 0, failed 1\n`,
      );
      expect((await rows())[0]).toMatchObject({ state: 'dead', replays: 0 });

      // The handler fixed: a worker that succeeds takes the Trigger's deliveries.
      await deliverer.setIngest('accept');
      await failing.stop();
      const fixed = await started(startWorkerProcess(env()));
      trigger.endpoints = [`${fixed.url}/`];
      const replayed = await runToExit(
        ['dist/replay.cjs', '--type', 'com.slack.event.app_mention'],
        replayEnv,
      );
      expect([replayed.code, replayed.stdout]).toEqual([
        0,
        `replayed com.slack.event.app_mention ${SOURCE} Replay1\nreplayed 1, failed 0\n`,
      ]);
      await deliverer.waitForSettled(20_000);
      expect(deliverer.settlements.map((s) => s.outcome)).toEqual(['deadLettered', 'delivered']);
      const republished = deliverer.events.at(-1)!.event;
      expect(republished).toMatchObject({
        id: 'Replay1',
        source: SOURCE,
        type: 'com.slack.event.app_mention',
        partitionkey: 'T0001',
        data,
      });
      expect(ends()).toEqual([{ text: 'Replay1', pid: fixed.child.pid }]);
      expect(await rows()).toEqual([
        expect.objectContaining({ id: 'Replay1', state: 'done', attempts: 4, replays: 1 }),
      ]);

      const deadline = Date.now() + GAUGE_WAIT_MS;
      while ((await deadGauge(deadLetter)) !== 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      expect(await deadGauge(deadLetter)).toBe(0);

      // Nothing dead is left: a second replay publishes nothing, and the worker ran it once.
      const again = await runToExit(['dist/replay.cjs', '--all'], replayEnv);
      expect([again.code, again.stdout]).toEqual([0, 'replayed 0, failed 0\n']);
      expect(deliverer.events).toHaveLength(2);
      expect(ends()).toHaveLength(1);
    },
    60_000,
  );
});
