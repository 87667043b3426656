import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export const REPO_ROOT = path.resolve(__dirname, '..');
/** functions-framework's command-line entry, run with `node` as the image runs it. */
export const FRAMEWORK_MAIN = 'node_modules/@google-cloud/functions-framework/build/src/main.js';

export function requireBuild(root = REPO_ROOT): void {
  if (!fs.existsSync(path.join(root, 'dist', 'main.cjs'))) {
    throw new Error(`${root}/dist is missing: run "npm run build" first (npm test does)`);
  }
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) =>
    server.close(() => {
      resolve();
    }),
  );
  return port;
}

export interface RunningProcess {
  readonly child: ChildProcess;
  readonly port: number;
  readonly url: string;
  /** Everything written to stdout and stderr so far. */
  output(): string;
  /** The JSON log lines written to stdout so far, parsed; other output is left out. */
  logLines(): Record<string, unknown>[];
  /** Sends SIGTERM and waits for the exit (SIGKILL after 5 s). */
  stop(): Promise<number | null>;
}

export interface StartOptions {
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  node?: string;
  /** Path that answers readyStatus once the server is up. */
  readyPath?: string;
  readyStatus?: number;
  timeoutMs?: number;
}

/**
 * The exit code once the process has exited and what it wrote has been read (its pipes closed, or
 * 2 s after the exit if a process it started holds them): 'exit' can come before the last output.
 */
export function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    const done = (): void => {
      resolve(child.exitCode);
    };
    const afterExit = (): void => {
      const open = [child.stdout, child.stderr].some(
        (stream) => stream !== null && !stream.readableEnded && !stream.destroyed,
      );
      if (!open) {
        done();
        return;
      }
      const timer = setTimeout(done, 2000);
      child.once('close', () => {
        clearTimeout(timer);
        done();
      });
    };
    if (child.exitCode !== null || child.signalCode !== null) afterExit();
    else child.once('exit', afterExit);
  });
}

/** Sends SIGTERM and waits for the exit, sending SIGKILL after graceMs; the exit code. */
export async function stopProcess(child: ChildProcess, graceMs = 5000): Promise<number | null> {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  try {
    return await exited(child);
  } finally {
    clearTimeout(timer);
  }
}

/** Starts a server process on a free loopback port and waits until readyPath answers. */
export async function startProcess(options: StartOptions): Promise<RunningProcess> {
  const port = await freePort();
  const child = spawn(options.node ?? process.execPath, options.args, {
    cwd: options.cwd ?? REPO_ROOT,
    env: { PATH: process.env.PATH, ...options.env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  // stdout on its own too: a chunk of stderr can arrive in the middle of a log line.
  let stdout = '';
  // Decoded as streams, so that a character split between two chunks is kept whole.
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    output += chunk;
    stdout += chunk;
  });
  child.stderr.on('data', (chunk: string) => (output += chunk));
  const url = `http://127.0.0.1:${port}`;
  const running: RunningProcess = {
    child,
    port,
    url,
    output: () => output,
    // Complete lines only: the last one may still be on its way.
    logLines: () =>
      stdout
        .slice(0, stdout.lastIndexOf('\n') + 1)
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>),
    stop: () => stopProcess(child),
  };
  const deadline = Date.now() + (options.timeoutMs ?? 15_000);
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      throw new Error(`process exited with ${child.exitCode} before answering:\n${output}`);
    }
    try {
      const res = await fetch(`${url}${options.readyPath ?? '/health/live'}`, {
        signal: AbortSignal.timeout(1000),
      });
      if (res.status === (options.readyStatus ?? 200)) return running;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await running.stop();
  throw new Error(`process did not answer within the deadline:\n${output}`);
}

/** Runs a command to its end, for processes expected to exit by themselves. */
export async function runToExit(
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = 15_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, args, {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await exited(child);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** The image's entry, as built: `node dist/main.cjs`. */
export const ENTRY = 'dist/main.cjs';

/** The production entry in production mode on loopback, against the given Vault and Ory. */
export function startCoffeebuddy(
  vaultUrl: string,
  oryUrl: string,
  env: NodeJS.ProcessEnv = {},
  nodeArgs: string[] = [],
): Promise<RunningProcess> {
  return startProcess({
    args: [...nodeArgs, ENTRY],
    env: {
      NODE_ENV: 'production',
      LISTEN_HOST: '127.0.0.1',
      VAULT_ADDR: vaultUrl,
      ORY_URL: oryUrl,
      ...env,
    },
  });
}

/** The production process with the eventing tests' Slack handler (testing/worker-entry.ts). */
export const WORKER_ENTRY = 'testing/worker-entry.ts';

/** The same, bundled by `npm run build` as the image's entry is: its memory is the image's. */
export const BUILT_WORKER_ENTRY = 'dist/worker-entry.cjs';

/**
 * A Slack worker process (FUNCTION_TARGET=slackWorker unless env says otherwise) on loopback;
 * `built` runs BUILT_WORKER_ENTRY (after `npm run build`) rather than the source through tsx.
 */
export function startWorkerProcess(env: NodeJS.ProcessEnv, built = false): Promise<RunningProcess> {
  if (built) requireBuild();
  return startProcess({
    // tsx as a loader in this process (its command-line entry would run the entry in a child
    // process of its own, which a SIGKILL would leave running).
    args: built ? [BUILT_WORKER_ENTRY] : ['--import', 'tsx', WORKER_ENTRY],
    env: { NODE_ENV: 'test', LISTEN_HOST: '127.0.0.1', FUNCTION_TARGET: 'slackWorker', ...env },
    timeoutMs: 30_000,
  });
}
