/**
 * npm run bench:request [-- --quick] [-- --out FILE]  (bench:request:node24 on the image's Node)
 *
 * What one request costs: server CPU time (user + system) per request, in µs, and its ratio to
 * the functions-framework hello world's.
 *
 * - Layers, in this process, each its own loopback server answering /health/live: bare http +
 *   sendJson (the floor), functions-framework's Express app + res.json (the hello world), and the
 *   real pipeline (createServer(createApp(...)): connection tracking, context, id header, routing,
 *   metrics and access-log observer). CPU is this process's (process.cpuUsage) over a wrk run,
 *   divided by the requests wrk made.
 * - Routes, in child processes: every route of dist/main.cjs as the image starts it (Dockerfile
 *   CMD and ENV, compile cache; Vault and Ory stand-ins), the functions-framework hello world and
 *   bare Node; CPU from /proc/<pid>/stat.
 * - Operations: single steps of the pipeline in a tight loop, in ns.
 *
 * Load comes from wrk, a separate process, rather than an in-process client: the server then pays
 * for what a real request costs it (HTTP parsing, socket reads and writes, event-loop turns at the
 * concurrency of npm run bench), and no client's CPU is billed to it. This process runs with the
 * image's NODE_ENV and NODE_OPTIONS (young-generation size changes GC cost per request): it starts
 * itself again with them. Targets take turns round by round; figures are medians. Loopback only;
 * every wrk run and every loop is bounded in time and count.
 */
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import http, { type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createApp, type App } from '../functions/app';
import { createServer, frameworkApp } from '../functions/server';
import { loadSettings } from '../lib/config/settings';
import { sendJson } from '../lib/http/respond';
import { runInContext, type RequestContext } from '../lib/request-context';
import { envOf, readDockerfile } from '../testing/dockerfile';
import { REPO_ROOT, requireBuild } from '../testing/process';
import { startOryStandIn, startVaultStandIn } from '../testing/standins';
import { benchArgs } from './args';
import {
  CONCURRENCY,
  HELLO,
  imageLike,
  median,
  requireWrk,
  round,
  sleep,
  start,
  stop,
  wrk,
  writeResult,
  type WrkRequest,
} from './harness';
import { processCpuUs } from '../testing/proc';

const { quick, out } = benchArgs(1);
const ROUNDS = quick ? 1 : 5;
const SECONDS = quick ? 1 : 2;
const WARMUP_SECONDS = 1;
const THREADS = 2;
/** Tight-loop operations: iterations per sample, samples, and a time bound per operation. */
const OP_ITERATIONS = quick ? 20_000 : 200_000;
const OP_SAMPLES = quick ? 1 : 5;
const OP_DEADLINE_MS = 3000;
/** Set in the copy of this process started with the image's environment. */
const IMAGE_ENV_MARK = 'COFFEEBUDDY_PER_REQUEST_IMAGE_ENV';

const LIVE = { status: 'live' };
const LIVE_ROUTE = '/health/live';
/** The signing secret is read from the Vault stand-in, as in production. */
const VAULT_TOKEN = 'hvs.per-request-bench';
const SLACK_SECRET_PATH = 'coffeebuddy/slack';
const UNSIGNED_SLACK_COMMAND: WrkRequest = {
  method: 'POST',
  body: 'command=%2Fcoffee&text=order',
  contentType: 'application/x-www-form-urlencoded',
};

interface Target {
  name: string;
  port: number;
  path: string;
  status: number;
  request?: WrkRequest;
  /** Server CPU time used so far, in µs. */
  cpuUs: () => number;
}

interface Sample {
  usPerRequest: number;
  rps: number;
  /** Wrong statuses and socket errors (wrk's 2 s timeout included). */
  errors: number;
}

const ownCpuUs = () => {
  const { user, system } = process.cpuUsage();
  return user + system;
};

async function measure(target: Target, seconds: number): Promise<Sample> {
  const before = target.cpuUs();
  const load = await wrk(
    target.port,
    target.path,
    seconds,
    CONCURRENCY,
    target.status,
    THREADS,
    target.request,
  );
  const used = target.cpuUs() - before;
  if (load.requests === 0) throw new Error(`${target.name}: no answers`);
  return { usPerRequest: used / load.requests, rps: load.rps, errors: load.errors };
}

/** The in-process servers, each answering /health/live; the second is the reference. */
function layers(app: App): { name: string; server: http.Server }[] {
  return [
    {
      name: 'bare http + sendJson',
      server: http.createServer((_req, res) => {
        sendJson(res, 200, LIVE);
      }),
    },
    {
      name: 'ff Express + res.json (hello world)',
      server: http.createServer(
        frameworkApp((_req, res) => {
          res.json(LIVE);
        }),
      ),
    },
    { name: 'pipeline: createServer(createApp(…))', server: createServer(app).server },
  ];
}

async function listen(server: http.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/**
 * CPU ns per call of `op` (CPU time, not wall time: the machine may be shared): median over
 * samples, each bounded by count and by time.
 */
function nsPerOp(op: (i: number) => unknown): number {
  const samples: number[] = [];
  const deadline = performance.now() + OP_DEADLINE_MS;
  for (let s = 0; s < OP_SAMPLES && performance.now() < deadline; s += 1) {
    const started = ownCpuUs();
    let i = 0;
    for (; i < OP_ITERATIONS && (i % 1024 !== 0 || performance.now() < deadline); i += 1) op(i);
    samples.push(((ownCpuUs() - started) * 1000) / i);
  }
  return median(samples);
}

/** Just enough of a request for RequestContexts: its headers. */
const requestWith = (headers: IncomingMessage['headers']) =>
  ({ headers }) as unknown as IncomingMessage;

/** Single steps the pipeline takes for each request, with the app's own parts, in a tight loop. */
function operations(app: App): Record<string, number> {
  const { contexts, observeRequest, lifecycle } = app;
  const router = app.routers.coffeebuddy!;
  const context: RequestContext = { requestId: 'per-request-bench' };
  const emitter = new EventEmitter();
  const noop = () => undefined;
  const headers = {
    [contexts.headerName]: 'kong-5f1d#12',
    traceparent: `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`,
  };
  return {
    'randomUUID()': nsPerOp(() => randomUUID()),
    // A new request each time: a context is made once per request.
    'contexts.of, no headers (UUID)': nsPerOp(() => contexts.of(requestWith({}))),
    'contexts.of, request id + traceparent': nsPerOp(() => contexts.of(requestWith(headers))),
    'AsyncLocalStorage run (runInContext)': nsPerOp(() => {
      runInContext(context, noop);
    }),
    'process.hrtime.bigint() ×2 → seconds': nsPerOp(
      () => Number(process.hrtime.bigint() - process.hrtime.bigint()) / 1e9,
    ),
    'emitter.once + emit (a res.once listener)': nsPerOp(() => {
      emitter.once('finish', noop);
      emitter.emit('finish');
    }),
    'router.routeFor + refusal (GET /health/live)': nsPerOp(() =>
      router.refusal(router.routeFor(LIVE_ROUTE), 'GET'),
    ),
    'observeRequest: counter + histogram, probe not logged': nsPerOp((i) => {
      observeRequest('GET', LIVE_ROUTE, 200, (i % 100) / 1e5, context);
    }),
    'lifecycle.requestStarted() + done': nsPerOp(() => {
      lifecycle.requestStarted()();
    }),
  };
}

const loadAverage = () => os.loadavg().map((load) => round(load, 2));

async function main(): Promise<void> {
  requireBuild();
  requireWrk();
  const loadBefore = loadAverage();
  const vault = await startVaultStandIn('active');
  vault.tokens.set(VAULT_TOKEN, Infinity);
  vault.secrets[SLACK_SECRET_PATH] = { signing_secret: 'per-request-bench-secret' };
  const ory = await startOryStandIn(true);
  const image = await imageLike(vault.url, ory.url);
  // The image's settings, in this process: the pipeline's real parts, its metrics and context.
  const app = createApp({ settings: loadSettings(image.variant.env) });
  const ops = operations(app);

  const servers = layers(app);
  const ports = await Promise.all(servers.map(({ server }) => listen(server)));
  const entry = await start(
    {
      ...image.variant,
      env: {
        ...image.variant.env,
        VAULT_TOKEN,
        SLACK_SIGNING_SECRET_VAULT_PATH: SLACK_SECRET_PATH,
      },
    },
    ['/health/live', '/health/ready'],
  );
  const imageEnv = {
    NODE_ENV: image.variant.env.NODE_ENV,
    NODE_OPTIONS: image.variant.env.NODE_OPTIONS,
  };
  const hello = await start({ ...HELLO, env: { ...HELLO.env, ...imageEnv } }, ['/health/live']);
  const bare = await start(
    { name: 'bare-node', args: ['bench/fixtures/bare.js'], cwd: REPO_ROOT, env: imageEnv },
    ['/health/live'],
  );
  // A crash must not leave servers behind.
  process.once('exit', () => {
    for (const { child } of [entry, hello, bare]) child.kill('SIGKILL');
  });
  const child = (name: string, started: typeof entry, urlPath: string, status = 200) => ({
    name,
    port: started.port,
    path: urlPath,
    status,
    cpuUs: () => processCpuUs(started.child.pid!),
  });
  const layerTargets: Target[] = servers.map(({ name }, i) => ({
    name,
    port: ports[i]!,
    path: LIVE_ROUTE,
    status: 200,
    cpuUs: ownCpuUs,
  }));
  const routeTargets: Target[] = [
    child('bare Node: /health/live', bare, '/health/live'),
    child('ff hello world: /health/live', hello, '/health/live'),
    child('entry: GET /health/live', entry, '/health/live'),
    child('entry: GET /health/ready (cached report, stand-ins)', entry, '/health/ready'),
    child('entry: GET /metrics', entry, '/metrics'),
    {
      ...child('entry: POST /slack/commands, unsigned (401)', entry, '/slack/commands', 401),
      request: UNSIGNED_SLACK_COMMAND,
    },
    child('entry: GET /not-a-route (404)', entry, '/not-a-route', 404),
    child('entry: GET /favicon.ico (404)', entry, '/favicon.ico', 404),
  ];
  const targets = [...layerTargets, ...routeTargets];

  try {
    // JIT and heap sizing first; then targets take turns, round by round.
    for (const target of targets) await measure(target, WARMUP_SECONDS);
    const samples = new Map<Target, Sample[]>(targets.map((t) => [t, []]));
    for (let r = 0; r < ROUNDS; r += 1) {
      for (const target of targets) {
        samples.get(target)!.push(await measure(target, SECONDS));
        await sleep(100);
      }
    }
    const summarise = (list: Target[]) =>
      list.map((target) => {
        const s = samples.get(target)!;
        return {
          name: target.name,
          usPerRequest: round(median(s.map((x) => x.usPerRequest))),
          rps: Math.round(median(s.map((x) => x.rps))),
          errors: s.reduce((sum, x) => sum + x.errors, 0),
        };
      });
    const result = {
      date: new Date().toISOString(),
      node: process.version,
      rounds: ROUNDS,
      seconds: SECONDS,
      wrk: `-t${THREADS} -c${CONCURRENCY}`,
      loadAverage: { before: loadBefore, after: loadAverage() },
      layers: summarise(layerTargets),
      routes: summarise(routeTargets),
      operationsNs: Object.fromEntries(Object.entries(ops).map(([k, v]) => [k, round(v)])),
    };
    print(result);
    const file = writeResult('per-request-', result, out);
    console.log(`\nwrote ${path.relative(REPO_ROOT, file)}`);
  } finally {
    await Promise.all([stop(entry.child), stop(hello.child), stop(bare.child)]);
    for (const { server } of servers) {
      server.closeAllConnections();
      server.close();
    }
    await Promise.all([app.close(), vault.close(), ory.close()]);
    image.cleanUp();
  }
}

interface Row {
  name: string;
  usPerRequest: number;
  rps: number;
  errors: number;
}

function print(r: {
  node: string;
  rounds: number;
  seconds: number;
  wrk: string;
  loadAverage: { before: number[]; after: number[] };
  layers: Row[];
  routes: Row[];
  operationsNs: Record<string, number>;
}): void {
  // The hello world is the second row of either table.
  const table = (title: string, rows: Row[]) => {
    const hello = rows[1]!;
    return [
      `| ${title} | µs/request | × hello world | req/s | req/s × hello world | errors |`,
      '|---|---|---|---|---|---|',
      ...rows.map(
        (row) =>
          `| ${row.name} | ${row.usPerRequest} | ${round(row.usPerRequest / hello.usPerRequest, 2)} | ${row.rps} | ${round(row.rps / hello.rps, 2)} | ${row.errors} |`,
      ),
    ];
  };
  console.log(
    [
      `Node ${r.node}; wrk ${r.wrk}, ${r.seconds} s a run; medians of ${r.rounds} rounds; server CPU (user + system) per request`,
      `load average (1, 5, 15 min): ${r.loadAverage.before.join(', ')} before, ${r.loadAverage.after.join(', ')} after`,
      '',
      ...table('layer (in this process, GET /health/live)', r.layers),
      '',
      ...table('route (child process, as the image starts it)', r.routes),
      '',
      '| operation (tight loop) | ns |',
      '|---|---|',
      ...Object.entries(r.operationsNs).map(([name, ns]) => `| ${name} | ${ns} |`),
    ].join('\n'),
  );
}

/** Runs this script again with the image's NODE_ENV and NODE_OPTIONS, unless this is that run. */
function inImageEnv(): boolean {
  if (process.env[IMAGE_ENV_MARK] === '1') return true;
  const { NODE_ENV, NODE_OPTIONS } = envOf(readDockerfile().at(-1)!);
  const run = spawnSync(
    process.execPath,
    [...process.execArgv, __filename, ...process.argv.slice(2)],
    {
      env: { ...process.env, NODE_ENV, NODE_OPTIONS, [IMAGE_ENV_MARK]: '1' },
      stdio: 'inherit',
    },
  );
  process.exitCode = run.status ?? 1;
  return false;
}

if (inImageEnv()) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  });
}
