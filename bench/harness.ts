/** Process, load and memory helpers shared by the benchmark and the soak. Loopback only. */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { promisify } from 'node:util';
import os from 'node:os';
import { envOf, execCommand, readDockerfile } from '../testing/dockerfile';
import { peakRssKb } from '../testing/proc';
import { FRAMEWORK_MAIN, REPO_ROOT, freePort, stopProcess } from '../testing/process';

const START_DEADLINE_MS = 20_000;
export const CONCURRENCY = 50;

export interface Variant {
  name: string;
  args: string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
}

/** A functions-framework hello world answering /health/live, started the usual way. */
export const HELLO: Variant = {
  name: 'ff-hello',
  args: [FRAMEWORK_MAIN, '--target=hello', '--source=bench/fixtures/hello'],
  cwd: REPO_ROOT,
  env: { NODE_ENV: 'production' },
};

/**
 * Writes a run's result as JSON to `out`, or to bench/results/<name>-node<major>.json; returns
 * the path written.
 */
export function writeResult(name: string, result: unknown, out?: string): string {
  const file =
    out ??
    path.join(
      REPO_ROOT,
      'bench',
      'results',
      `${name}node${process.versions.node.split('.')[0]}.json`,
    );
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  return file;
}

export const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
export const round = (value: number, digits = 1) => Number(value.toFixed(digits));
export const growth = (beforeKb: number, afterKb: number) =>
  round((afterKb / beforeKb - 1) * 100, 1);
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One GET on a fresh connection; the status, or 0 when nothing answers. */
export async function status(port: number, urlPath: string): Promise<number> {
  return (await answerOf(port, urlPath)).status;
}

export interface Started {
  child: ChildProcess;
  port: number;
  /** ms from spawn to the first 200 on each path asked for. */
  firstOk: Record<string, number>;
  /** The `listening` log line's fields, once written (CoffeeBuddy's entry only). */
  listening: () => Record<string, unknown> | undefined;
}

/** One request on a fresh connection, bounded by 1 s; its status (0 when nothing answers) and body. */
export function answerOf(
  port: number,
  urlPath: string,
  request?: { method: string; headers: Record<string, string>; body: string },
): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path: urlPath,
        method: request?.method ?? 'GET',
        headers: request?.headers,
        agent: false,
        timeout: 1000,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, body });
        });
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => {
      resolve({ status: 0, body: '' });
    });
    req.end(request?.body);
  });
}

/** Whether a server answers `urlPath` as it should once up: by default, a GET answered 200. */
export type ReadyCheck = (port: number, urlPath: string) => Promise<boolean>;

const answers200: ReadyCheck = async (port, urlPath) => (await status(port, urlPath)) === 200;

/** Spawns a variant; `firstOk` holds the ms from spawn until `isOk` first held for each path. */
export async function start(
  variant: Variant,
  paths: string[],
  isOk: ReadyCheck = answers200,
): Promise<Started> {
  const port = await freePort();
  const spawnedAt = performance.now();
  const child = spawn(process.execPath, variant.args, {
    cwd: variant.cwd,
    env: { PATH: process.env.PATH, ...variant.env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  let listening: Record<string, unknown> | undefined;
  child.stdout.on('data', (chunk: Buffer) => {
    if (listening !== undefined) return;
    output += chunk.toString();
    const line = output.split('\n').find((l) => l.startsWith('{"') && l.includes('"listening"'));
    if (line !== undefined) listening = JSON.parse(line) as Record<string, unknown>;
  });
  const firstOk: Record<string, number> = {};
  for (const urlPath of paths) {
    while (firstOk[urlPath] === undefined) {
      if (child.exitCode !== null) throw new Error(`${variant.name} exited with ${child.exitCode}`);
      if (performance.now() - spawnedAt > START_DEADLINE_MS) {
        child.kill('SIGKILL');
        throw new Error(`${variant.name} gave no 200 on ${urlPath} within ${START_DEADLINE_MS} ms`);
      }
      if (await isOk(port, urlPath)) firstOk[urlPath] = performance.now() - spawnedAt;
      else await sleep(2);
    }
  }
  return { child, port, firstOk, listening: () => listening };
}

export async function stop(child: ChildProcess): Promise<void> {
  await stopProcess(child);
}

/** `count` sequential keep-alive GETs (bounded by count and by 60 s); returns how many were made. */
export async function requestsOn(port: number, urlPath: string, count: number): Promise<number> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  const deadline = performance.now() + 60_000;
  let made = 0;
  const worker = async () => {
    while (made < count && performance.now() < deadline) {
      made += 1;
      await new Promise<void>((resolve) => {
        http
          .get({ host: '127.0.0.1', port, path: urlPath, agent }, (res) => {
            res.resume();
            res.on('end', resolve);
          })
          .on('error', () => {
            resolve();
          });
      });
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  agent.destroy();
  return made;
}

export interface Load {
  requests: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  /** errors, broken down: wrong status, the expected status with another body, wrk's socket errors. */
  wrongStatus: number;
  wrongBody: number;
  socket: { connect: number; read: number; write: number; timeout: number };
}

const execFileAsync = promisify(execFile);

const EXPECT_STATUS_SCRIPT = path.join(__dirname, 'expect-status.lua');

/** A request other than a GET without a body; wrk sends it through the expect-status script. */
export interface WrkRequest {
  method: string;
  body: string;
  contentType: string;
  /** More headers, sent with every request. */
  headers?: Readonly<Record<string, string>>;
  /** The exact body every answer of the expected status must have; any other counts as an error. */
  expectBody?: string;
}

/**
 * wrk at fixed concurrency for a fixed time (both bounded); latencies from its --latency table.
 * With expectStatus, errors are answers of any other status (checked by a Lua script), answers
 * whose body is not the request's expectBody, and socket errors; without it, non-2xx answers plus socket errors. Asynchronous: the Vault and Ory
 * stand-ins live on this process's event loop.
 */
export async function wrk(
  port: number,
  urlPath: string,
  seconds: number,
  connections = CONCURRENCY,
  expectStatus?: number,
  threads = 2,
  request?: WrkRequest,
): Promise<Load> {
  if (request !== undefined && expectStatus === undefined) {
    throw new Error('wrk: a request with a method and body needs expectStatus');
  }
  const script = expectStatus === undefined ? [] : ['-s', EXPECT_STATUS_SCRIPT];
  const requestEnv =
    request === undefined
      ? {}
      : {
          WRK_METHOD: request.method,
          WRK_BODY: request.body,
          WRK_CONTENT_TYPE: request.contentType,
          WRK_HEADERS: Object.entries(request.headers ?? {})
            .map(([name, value]) => `${name}: ${value}`)
            .join('\n'),
          EXPECT_BODY: request.expectBody ?? '',
        };
  const { stdout: out } = await execFileAsync(
    'wrk',
    [
      `-t${threads}`,
      `-c${connections}`,
      `-d${seconds}s`,
      '--timeout',
      '2s',
      '--latency',
      ...script,
      `http://127.0.0.1:${port}${urlPath}`,
    ],
    {
      encoding: 'utf8',
      timeout: (seconds + 30) * 1000,
      env: { ...process.env, ...requestEnv, EXPECT_STATUS: String(expectStatus ?? '') },
    },
  );
  const ms = (label: string) => {
    const m = new RegExp(`^\\s*${label}\\s+([\\d.]+)(us|ms|s)`, 'm').exec(out);
    if (m === null) return Number.NaN;
    const factor = m[2] === 'us' ? 0.001 : m[2] === 's' ? 1000 : 1;
    return Number(m[1]) * factor;
  };
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
  const wrongStatus =
    expectStatus === undefined
      ? Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0)
      : Number(/unexpected_status (\d+)/.exec(out)?.[1] ?? Number.NaN);
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(
    out,
  );
  const [connect = 0, read = 0, write = 0, timeout = 0] = (socketErrors?.slice(1) ?? []).map(
    Number,
  );
  const wrongBody =
    request?.expectBody === undefined
      ? 0
      : Number(/unexpected_body (\d+)/.exec(out)?.[1] ?? Number.NaN);
  const errors = wrongStatus + wrongBody + connect + read + write + timeout;
  return {
    requests,
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0),
    p50Ms: ms('50%'),
    p99Ms: ms('99%'),
    errors,
    wrongStatus,
    wrongBody,
    socket: { connect, read, write, timeout },
  };
}

export function requireWrk(): void {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
  } catch (error) {
    // wrk --version exits 1 after printing its version; only a missing binary is fatal.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error('wrk not found: install it with "apt-get install wrk" (npm run setup does)', {
        cause: error,
      });
    }
  }
}

/** CoffeeBuddy as the image runs it, against the given Vault and Ory. */
export interface ImageLike {
  variant: Variant;
  /** Removes the compile cache made for this run. */
  cleanUp(): void;
}

/**
 * The Dockerfile's CMD and ENV, with a compile cache prepared the way the image build prepares
 * it (build/warm-compile-cache.js), in a directory of this run's.
 */
export async function imageLike(vaultUrl: string, oryUrl: string): Promise<ImageLike> {
  const runtime = readDockerfile().at(-1)!;
  const [, ...args] = execCommand(runtime)!;
  const compileCache = fs.mkdtempSync(path.join(os.tmpdir(), 'coffeebuddy-compile-cache-'));
  const env = {
    ...envOf(runtime),
    NODE_COMPILE_CACHE: compileCache,
    LISTEN_HOST: '127.0.0.1',
    VAULT_ADDR: vaultUrl,
    ORY_URL: oryUrl,
  };
  execFileSync(process.execPath, ['build/warm-compile-cache.js', process.execPath, ...args], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH, ...env, WARM_PORT: String(await freePort()) },
    stdio: 'inherit',
    timeout: 60_000,
  });
  return {
    variant: { name: 'coffeebuddy', args, cwd: REPO_ROOT, env },
    cleanUp: () => {
      fs.rmSync(compileCache, { recursive: true, force: true });
    },
  };
}

export interface PeakRow {
  variant: string;
  peakRssMb: number;
  rps: number;
  p99Ms: number;
  errors: number;
}

/** Peak RSS (VmHWM) of a fresh server under `seconds` of wrk -t2 -c50 on /health/live. */
export async function peakUnderLoad(variant: Variant, seconds: number): Promise<PeakRow> {
  const server = await start(variant, ['/health/live']);
  try {
    await sleep(300);
    const load = await wrk(server.port, '/health/live', seconds, CONCURRENCY, 200, 2);
    return {
      variant: variant.name,
      peakRssMb: round(peakRssKb(server.child.pid!) / 1024),
      rps: Math.round(load.rps),
      p99Ms: round(load.p99Ms, 2),
      errors: load.errors,
    };
  } finally {
    await stop(server.child);
  }
}
