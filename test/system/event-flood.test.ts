import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { envOf, readDockerfile } from '../../testing/dockerfile';
import {
  deliverySpecOf,
  isRetryableStatus,
  retryWaitMs,
  type DeliverySpec,
  type SubscriberAnswer,
} from '../../testing/deliverer';
import { metricValue } from '../../testing/metrics-text';
import { APP_PASSWORD, itWithPostgres, migratedCluster } from '../../testing/postgres';
import { peakRssKb } from '../../testing/proc';
import {
  ENTRY,
  REPO_ROOT,
  requireBuild,
  startProcess,
  startWorkerProcess,
  type RunningProcess,
} from '../../testing/process';

/**
 * Floods of deliveries built to be expensive once parsed (80,000 bytes, mostly `{},`: ~1.7 MiB of
 * heap each), all at once, against the worker (built with a handler that waits 3 s) and the
 * dead-letter function, bundled as the image's entry and started with its memory flags, on a real
 * PostgreSQL. Each delivery is retried as the worker Trigger's
 * `delivery` says (knative/eventing/trigger.yaml: retries, backoff, Retry-After under
 * retryAfterMax), as Knative's dispatcher would; nothing else limits them. Past
 * EVENT_MAX_IN_FLIGHT the functions answer 429 before reading a body: the process lives, its peak
 * RSS stays under 200 MiB, and every event is taken exactly once before the retries run out.
 */

const BODY_BYTES = 80_000;
/** The bound on peak RSS under these floods, below the pod's 256 Mi. */
const PEAK_RSS_MB = 200;
const HANDLER_DELAY_MS = 3000;
const SOURCE = 'https://slack.com/teams/T0001';
const TYPE = 'com.slack.event.app_mention';

const cluster = migratedCluster(['slack_work']);
const imageNodeOptions = envOf(readDockerfile().at(-1)!).NODE_OPTIONS ?? '';
const processes: RunningProcess[] = [];
let runsDir = '';

beforeEach(() => {
  runsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'coffeebuddy-flood-'));
});
afterEach(async () => {
  await Promise.all(processes.splice(0).map((p) => p.stop()));
  fs.rmSync(runsDir, { recursive: true, force: true });
}, 30_000);

/** The worker Trigger's delivery settings, as deployed. */
function triggerDelivery(): DeliverySpec {
  const text = fs.readFileSync(path.join(REPO_ROOT, 'knative/eventing/trigger.yaml'), 'utf8');
  const trigger = parse(text) as { spec: { delivery: Parameters<typeof deliverySpecOf>[0] } };
  return deliverySpecOf(trigger.spec.delivery);
}

/** A Slack event envelope of exactly BODY_BYTES bytes whose inner event carries `[{},{},…]`. */
function expensiveEvent(id: string): string {
  const head = `{"type":"event_callback","event_id":"${id}","event":{"type":"app_mention","text":"${id}","pad":[`;
  const tail = '{}]}}';
  const fill = '{},'.repeat(Math.floor((BODY_BYTES - head.length - tail.length) / 3));
  const body = `${head}${fill}${tail}`;
  return `${body}${' '.repeat(BODY_BYTES - body.length)}`;
}

/** One attempt, answered or not, within the attempt timeout. */
function post(
  url: string,
  headers: Record<string, string>,
  body: string,
  timeoutMs: number,
): Promise<SubscriberAnswer> {
  return new Promise((resolve) => {
    const req = http.request(url, {
      method: 'POST',
      agent: false,
      headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
    });
    const timer = setTimeout(() => {
      resolve({ error: 'timeout' });
      req.destroy();
    }, timeoutMs);
    req.on('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ error: error.code ?? error.message });
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
      });
    });
    req.end(body);
  });
}

interface Delivered {
  id: string;
  /** The last answer's status, or the error that stood for one. */
  last: number | string;
  attempts: number;
  refused: number;
}

/** One delivery with the Trigger's retries (Knative's SelectiveRetry and backoff). */
async function deliver(
  url: string,
  id: string,
  delivery: DeliverySpec,
  extra: Record<string, string> = {},
): Promise<Delivered> {
  const headers = {
    'content-type': 'application/json',
    'ce-specversion': '1.0',
    'ce-id': id,
    'ce-source': SOURCE,
    'ce-type': TYPE,
    ...extra,
  };
  const body = expensiveEvent(id);
  let refused = 0;
  for (let attempt = 0; ; attempt += 1) {
    const answer = await post(url, headers, body, delivery.timeoutMs);
    const last = 'error' in answer ? answer.error : answer.status;
    if (last === 429) refused += 1;
    const done = typeof last === 'number' && last >= 200 && last < 300;
    const retryable = typeof last === 'string' || isRetryableStatus(last);
    if (done || !retryable || attempt >= delivery.retry) {
      return { id, last, attempts: attempt + 1, refused };
    }
    await new Promise((resolve) => setTimeout(resolve, retryWaitMs(delivery, attempt + 1, answer)));
  }
}

async function flood(
  process: RunningProcess,
  count: number,
  prefix: string,
  extra?: Record<string, string>,
): Promise<Delivered[]> {
  const delivery = triggerDelivery();
  const ids = Array.from({ length: count }, (_, i) => `${prefix}${i}`);
  return Promise.all(ids.map((id) => deliver(`${process.url}/`, id, delivery, extra)));
}

async function scrape(process: RunningProcess): Promise<string> {
  const res = await fetch(`${process.url}/metrics`, { signal: AbortSignal.timeout(5000) });
  return res.text();
}

const workCount = (text: string, outcome: string) =>
  metricValue(text, 'coffeebuddy_slack_work_total', { kind: 'events', outcome });

/** The rows by state: how many, and the most attempts (claims) any of them took. */
async function rowsByState(): Promise<Record<string, { rows: number; mostAttempts: number }>> {
  const rows = await cluster()!.admin(
    'SELECT state, count(*)::int AS n, max(attempts)::int AS most FROM slack_work GROUP BY state',
    'coffeebuddy',
  );
  return Object.fromEntries(
    rows.map((row) => [String(row.state), { rows: Number(row.n), mostAttempts: Number(row.most) }]),
  );
}

async function expectAliveAndSmall(process: RunningProcess): Promise<void> {
  expect(process.child.exitCode).toBeNull();
  const live = await fetch(`${process.url}/health/live`, { signal: AbortSignal.timeout(5000) });
  expect(live.status).toBe(200);
  expect(process.output()).not.toContain('heap limit');
  expect(peakRssKb(process.child.pid!) / 1024).toBeLessThanOrEqual(PEAK_RSS_MB);
}

describe('floods of deliveries built to be expensive, as the image runs', () => {
  itWithPostgres(
    '600 at once to a worker whose handler waits 3 s: alive, peak RSS ≤ 200 MiB, each done once',
    async () => {
      const runsFile = path.join(runsDir, 'runs');
      fs.writeFileSync(runsFile, '');
      const worker = await startWorkerProcess(
        {
          ...cluster()!.env({ PGPASSWORD: APP_PASSWORD }),
          NODE_OPTIONS: imageNodeOptions,
          WORK_RUNS_FILE: runsFile,
          WORK_HANDLER_DELAY_MS: String(HANDLER_DELAY_MS),
        },
        true,
      );
      processes.push(worker);

      const delivered = await flood(worker, 600, 'Flood');

      // Every one taken before its retries ran out: none would have been dead-lettered.
      const notDone = delivered.filter((d) => d.last !== 204);
      expect(notDone).toEqual([]);
      // The bound was met, and answered 429 rather than taking more.
      expect(delivered.some((d) => d.refused > 0)).toBe(true);
      await expectAliveAndSmall(worker);

      const lines = fs.readFileSync(runsFile, 'utf8').split('\n');
      const ends = lines.filter((l) => l.startsWith('end ')).map((l) => l.split(' ')[1]);
      const starts = lines.filter((l) => l.startsWith('start '));
      expect(starts).toHaveLength(600);
      expect(new Set(ends).size).toBe(600);
      expect(ends).toHaveLength(600);
      // Each claimed once: no handler ran twice, none was taken over.
      expect(await rowsByState()).toEqual({ done: { rows: 600, mostAttempts: 1 } });
      const text = await scrape(worker);
      expect(workCount(text, 'done')).toBe(600);
      expect(workCount(text, 'duplicate')).toBe(0);
      expect(workCount(text, 'overloaded')).toBe(delivered.reduce((sum, d) => sum + d.refused, 0));
    },
    420_000,
  );

  itWithPostgres(
    '300 at once to the dead-letter function: alive, peak RSS ≤ 200 MiB, each recorded once',
    async () => {
      requireBuild();
      const deadLetter = await startProcess({
        args: [ENTRY],
        env: {
          NODE_ENV: 'test',
          LISTEN_HOST: '127.0.0.1',
          NODE_OPTIONS: imageNodeOptions,
          ...cluster()!.env({ PGPASSWORD: APP_PASSWORD }),
          FUNCTION_TARGET: 'slackDeadLetter',
          // As knative/eventing/dead-letter.yaml: a small pool, so deliveries wait for it.
          PG_POOL_MAX: '4',
        },
      });
      processes.push(deadLetter);

      const delivered = await flood(deadLetter, 300, 'Dead', {
        'ce-knativeerrorcode': '500',
        'ce-knativeerrordest': 'http://coffeebuddy-slack-worker.coffeebuddy.svc.cluster.local',
      });

      expect(delivered.filter((d) => d.last !== 204)).toEqual([]);
      await expectAliveAndSmall(deadLetter);
      expect((await rowsByState()).dead?.rows).toBe(300);
      const text = await scrape(deadLetter);
      expect(workCount(text, 'dead_lettered')).toBe(300);
      expect(workCount(text, 'overloaded')).toBe(delivered.reduce((sum, d) => sum + d.refused, 0));
    },
    300_000,
  );
});
