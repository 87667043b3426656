/**
 * Slack work through Knative Eventing, for `npm run bench`:
 * - Slack's acknowledgement time (p50/p99) from the built entry with K_SINK (a sink that answers
 *   202 after SINK_DELAY_MS, as a Kafka Broker does once the record is written) against the
 *   in-process path (no K_SINK) in the same run; the goal is p99 ≤ sink time + 25 ms.
 * - Worker events/s with a no-op handler on a real, durable PostgreSQL (fsync on), one worker and
 *   two; the goal is ≥ 500 events/s per worker.
 * Loopback only; every loop bounded in count and time.
 */
import http from 'node:http';
import { CloudEvent, HTTP } from 'cloudevents';
import { signSlackRequest } from '../lib/slack/signature';
import {
  APP_PASSWORD,
  applyMigrations,
  postgresBinDir,
  startPostgres,
  type PostgresCluster,
} from '../testing/postgres';
import { ENTRY, startProcess, startWorkerProcess, type RunningProcess } from '../testing/process';
import { processCpuUs } from '../testing/proc';
import { startSink } from '../testing/sink';
import { median, round } from './harness';

const SECRET = 'bench-signing-secret';
/** How long the stand-in Broker takes to answer a publish. */
export const SINK_DELAY_MS = 5;
/** Acknowledgement time's allowance beyond the sink's: the goal. */
const ACK_ALLOWANCE_MS = 25;
const WORKER_GOAL_EVENTS_PER_SECOND = 500;
/** Slack delivers events a few at a time: the ack benchmark's concurrency. */
const ACK_CONCURRENCY = 4;
/** Deliveries to one worker at once, as a Trigger's dispatcher sends them. */
/** As the worker's containerConcurrency and EVENT_MAX_IN_FLIGHT (20): more would be refused 429. */
const WORKER_CONCURRENCY = 20;
const TIME_BOUND_MS = 60_000;

export interface AckFigures {
  requests: number;
  p50Ms: number;
  p99Ms: number;
  non200: number;
}

export interface EventingResult {
  sinkDelayMs: number;
  ack: { inProcess: AckFigures; kSink: AckFigures; goalP99Ms: number };
  worker: {
    postgres: string;
    one: { events: number; eventsPerSecond: number; non204: number; cpuUsPerEvent: number };
    two: {
      events: number;
      eventsPerSecond: number;
      perWorker: number;
      non204: number;
      cpuUsPerEvent: number;
    };
    goalPerWorker: number;
  };
}

const percentile = (sorted: number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? 0;

/** POSTs one request on a keep-alive agent; its status and milliseconds. */
function post(
  agent: http.Agent,
  port: number,
  urlPath: string,
  headers: Record<string, string>,
  body: string,
): Promise<{ status: number; ms: number }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: urlPath, method: 'POST', agent, headers, timeout: 10_000 },
      (res) => {
        res.resume();
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, ms: performance.now() - started });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => {
      resolve({ status: 0, ms: performance.now() - started });
    });
    req.end(body);
  });
}

/** Runs `count` calls of `one(i)` at `concurrency`, within TIME_BOUND_MS; their results. */
async function run<T>(
  count: number,
  concurrency: number,
  one: (i: number) => Promise<T>,
): Promise<{ results: T[]; seconds: number }> {
  const results: T[] = [];
  let next = 0;
  const started = performance.now();
  const deadline = started + TIME_BOUND_MS;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count && performance.now() < deadline) {
        const i = next;
        next += 1;
        results.push(await one(i));
      }
    }),
  );
  return { results, seconds: (performance.now() - started) / 1000 };
}

/** Slack's acknowledgement time from one ingress process: signed events, each a new id. */
async function ackTimes(server: RunningProcess, count: number, tag: string): Promise<AckFigures> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: ACK_CONCURRENCY });
  try {
    const send = (i: number) => {
      const body = JSON.stringify({
        type: 'event_callback',
        team_id: 'T0001',
        event_id: `Ev${tag}${i}`,
        event: { type: 'app_mention', text: 'coffee?' },
      });
      const timestamp = String(Math.floor(Date.now() / 1000));
      return post(
        agent,
        server.port,
        '/slack/events',
        {
          'Content-Type': 'application/json',
          'X-Slack-Request-Timestamp': timestamp,
          'X-Slack-Signature': signSlackRequest(SECRET, timestamp, body),
        },
        body,
      );
    };
    await run(Math.min(200, count), ACK_CONCURRENCY, (i) => send(-i - 1)); // warm-up
    const { results } = await run(count, ACK_CONCURRENCY, send);
    const sorted = results.map((r) => r.ms).sort((a, b) => a - b);
    return {
      requests: results.length,
      p50Ms: round(median(sorted), 2),
      p99Ms: round(percentile(sorted, 99), 2),
      non200: results.filter((r) => r.status !== 200).length,
    };
  } finally {
    agent.destroy();
  }
}

async function ingress(env: NodeJS.ProcessEnv): Promise<RunningProcess> {
  return startProcess({
    args: [ENTRY],
    env: { NODE_ENV: 'test', LISTEN_HOST: '127.0.0.1', SLACK_SIGNING_SECRET: SECRET, ...env },
  });
}

/** Delivers `count` new events to the workers, spread evenly; events/s and non-204 answers. */
async function deliverTo(
  workers: RunningProcess[],
  count: number,
  tag: string,
): Promise<{ events: number; seconds: number; non204: number }> {
  const agents = workers.map(
    () => new http.Agent({ keepAlive: true, maxSockets: WORKER_CONCURRENCY }),
  );
  try {
    const { results, seconds } = await run(count, WORKER_CONCURRENCY * workers.length, (i) => {
      const id = `${tag}${i}`;
      const message = HTTP.binary(
        new CloudEvent({
          id,
          source: 'https://slack.com/teams/T0001',
          type: 'com.slack.event.app_mention',
          datacontenttype: 'application/json',
          data: { type: 'event_callback', event_id: id, event: { type: 'app_mention', text: id } },
        }),
      );
      const w = i % workers.length;
      return post(
        agents[w]!,
        workers[w]!.port,
        '/',
        message.headers as Record<string, string>,
        message.body as string,
      );
    });
    return {
      events: results.length,
      seconds,
      non204: results.filter((r) => r.status !== 204).length,
    };
  } finally {
    for (const agent of agents) agent.destroy();
  }
}

export async function benchEventing(quick: boolean): Promise<EventingResult | undefined> {
  if (postgresBinDir() === undefined) {
    console.log('eventing: PostgreSQL not installed (npm run setup): not measured');
    return undefined;
  }
  const ackRequests = quick ? 200 : 3000;
  const workerEvents = quick ? 500 : 10_000;

  // Acknowledgement time: the two ingress variants take turns, three rounds, medians.
  const sink = await startSink({ kind: 'status', status: 202, delayMs: SINK_DELAY_MS });
  const rounds: { inProcess: AckFigures[]; kSink: AckFigures[] } = { inProcess: [], kSink: [] };
  try {
    for (let r = 0; r < (quick ? 1 : 3); r += 1) {
      for (const variant of ['inProcess', 'kSink'] as const) {
        const server = await ingress(variant === 'kSink' ? { K_SINK: sink.url } : {});
        try {
          rounds[variant].push(await ackTimes(server, ackRequests, `${variant}${r}x`));
        } finally {
          await server.stop();
        }
      }
    }
  } finally {
    await sink.close();
  }
  const medianOf = (figures: AckFigures[]): AckFigures => ({
    requests: figures.reduce((sum, f) => sum + f.requests, 0),
    p50Ms: round(median(figures.map((f) => f.p50Ms)), 2),
    p99Ms: round(median(figures.map((f) => f.p99Ms)), 2),
    non200: figures.reduce((sum, f) => sum + f.non200, 0),
  });

  // Worker throughput on a durable PostgreSQL.
  let cluster: PostgresCluster | undefined;
  const workers: RunningProcess[] = [];
  try {
    cluster = await startPostgres({ durable: true });
    await applyMigrations(cluster);
    const env = { ...cluster.env({ PGPASSWORD: APP_PASSWORD }), PG_POOL_MAX: '10' };
    workers.push(await startWorkerProcess(env), await startWorkerProcess(env));
    await deliverTo(workers.slice(0, 1), Math.min(500, workerEvents), 'warm');
    await deliverTo(workers.slice(1), Math.min(500, workerEvents), 'warmer');
    // Worker CPU per event: what one worker would do with a core of its own.
    const cpu = () => workers.reduce((sum, w) => sum + processCpuUs(w.child.pid!), 0);
    let before = cpu();
    const one = await deliverTo(workers.slice(0, 1), workerEvents, 'one');
    const oneCpuUs = cpu() - before;
    before = cpu();
    const two = await deliverTo(workers, workerEvents * 2, 'two');
    const twoCpuUs = cpu() - before;
    const perSecond = (f: { events: number; seconds: number }) => round(f.events / f.seconds, 0);
    return {
      sinkDelayMs: SINK_DELAY_MS,
      ack: {
        inProcess: medianOf(rounds.inProcess),
        kSink: medianOf(rounds.kSink),
        goalP99Ms: SINK_DELAY_MS + ACK_ALLOWANCE_MS,
      },
      worker: {
        postgres: `PostgreSQL ${postgresBinDir()!.split('/').at(-2)} on 127.0.0.1, fsync on, PG_POOL_MAX 10 per worker, ${WORKER_CONCURRENCY} deliveries at once per worker`,
        one: {
          events: one.events,
          eventsPerSecond: perSecond(one),
          non204: one.non204,
          cpuUsPerEvent: round(oneCpuUs / one.events, 0),
        },
        two: {
          events: two.events,
          eventsPerSecond: perSecond(two),
          perWorker: round(perSecond(two) / 2, 0),
          non204: two.non204,
          cpuUsPerEvent: round(twoCpuUs / two.events, 0),
        },
        goalPerWorker: WORKER_GOAL_EVENTS_PER_SECOND,
      },
    };
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
    await cluster?.remove();
  }
}

/** The figures as table lines. */
export function eventingLines(r: EventingResult): string[] {
  const { inProcess, kSink, goalP99Ms } = r.ack;
  return [
    '',
    `| Slack acknowledgement (/slack/events, ${ACK_CONCURRENCY} at once) | requests | p50 (ms) | p99 (ms) | non-200 |`,
    '|---|---|---|---|---|',
    `| in process (no K_SINK) | ${inProcess.requests} | ${inProcess.p50Ms} | ${inProcess.p99Ms} | ${inProcess.non200} |`,
    `| K_SINK, sink answering in ${r.sinkDelayMs} ms | ${kSink.requests} | ${kSink.p50Ms} | ${kSink.p99Ms} | ${kSink.non200} |`,
    `ack p99 with K_SINK: ${kSink.p99Ms} ms (goal ≤ ${goalP99Ms} ms)`,
    '',
    `| Slack worker, no-op handler (${r.worker.postgres}) | events | events/s | per worker | worker CPU µs/event | non-204 |`,
    '|---|---|---|---|---|---|',
    `| one worker | ${r.worker.one.events} | ${r.worker.one.eventsPerSecond} | ${r.worker.one.eventsPerSecond} | ${r.worker.one.cpuUsPerEvent} | ${r.worker.one.non204} |`,
    `| two workers | ${r.worker.two.events} | ${r.worker.two.eventsPerSecond} | ${r.worker.two.perWorker} | ${r.worker.two.cpuUsPerEvent} | ${r.worker.two.non204} |`,
    `worker events/s per worker: ${r.worker.one.eventsPerSecond} alone, ${r.worker.two.perWorker} beside another (goal ≥ ${r.worker.goalPerWorker}); a core of its own would do ${Math.round(1e6 / r.worker.one.cpuUsPerEvent)}`,
  ];
}
