/**
 * npm run bench:instructions (and :node24): user-space instructions per request of the signed
 * `/coffee help`, counted by Valgrind's cachegrind, for the peers of bench/peers.ts (CoffeeBuddy
 * as the image starts it, Bolt, the floor) on the same Node. Unlike req/s on a shared machine,
 * an instruction count hardly moves with the machine's load, so a change of a few percent shows.
 *
 * Each peer runs twice under cachegrind, answering FIRST and then LAST requests over 4 keep-alive
 * connections (every answer checked), and stops on SIGTERM; the difference of the two counts over
 * LAST − FIRST requests is the count a request, start-up left out. V8's compilers run on threads
 * cachegrind counts as well, and are still busy at these counts: they are reported apart and left
 * out of `steady`, the figure compared; garbage collection stays in. 127.0.0.1 only; every wait
 * is bounded.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { freePort } from '../testing/process';
import { round, writeResult, type Variant } from './harness';
import { startPeers, type Peers } from './peers';

const COMMAND_PATH = '/slack/commands';
const CONNECTIONS = 4;
const START_DEADLINE_MS = 180_000;
const REQUEST_TIMEOUT_MS = 60_000;
const EXIT_DEADLINE_MS = 120_000;
/** Functions of V8's compilers (run on background threads), by their C++ names. */
const COMPILER = /compiler::|maglev::|Maglev|turboshaft|Zone|baseline::|interpreter::Bytecode/;
/** Functions of V8's garbage collector. */
const GC = /Scaveng|IterateObjectCache|RootScavenge|heap::|Heap::|MarkCompact|Sweeper|Evacuat/;

export interface InstructionCount {
  /** Every instruction a request, V8's compiler threads included. */
  total: number;
  compilers: number;
  gc: number;
  /** total − compilers: what a warmed-up process spends on a request. */
  steady: number;
}

function requireValgrind(): void {
  for (const tool of ['valgrind', 'cg_diff', 'cg_annotate']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      throw new Error(`${tool} not found: install Valgrind ("apt-get install valgrind")`);
    }
  }
}

/** Sends `count` signed commands over CONNECTIONS keep-alive connections; each answer checked. */
async function send(port: number, peers: Peers, count: number): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  const { signed } = peers;
  const post = () =>
    new Promise<void>((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port,
          path: COMMAND_PATH,
          method: signed.method,
          agent,
          timeout: REQUEST_TIMEOUT_MS,
          headers: { ...signed.headers, 'Content-Type': signed.contentType },
        },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (body += chunk));
          res.on('end', () => {
            if (res.statusCode === 200 && body === signed.expectBody) resolve();
            else reject(new Error(`answered ${res.statusCode}: ${body.slice(0, 200)}`));
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error('no answer in time')));
      req.on('error', reject);
      req.end(signed.body);
    });
  let sent = 0;
  const connection = async () => {
    while (sent < count) {
      sent += 1;
      await post();
    }
  };
  try {
    await Promise.all(Array.from({ length: CONNECTIONS }, connection));
  } finally {
    agent.destroy();
  }
}

/** Runs `variant` under cachegrind for `count` requests after its first answer; its output file. */
async function counted(
  variant: Variant,
  peers: Peers,
  count: number,
  dir: string,
): Promise<string> {
  const port = await freePort();
  const out = path.join(dir, `${variant.name}-${count}.cachegrind`);
  const child = spawn(
    'valgrind',
    [
      '--tool=cachegrind',
      '--cache-sim=no',
      // V8 writes the code it runs: Valgrind must notice (all but code mapped from files).
      '--smc-check=all-non-file',
      `--cachegrind-out-file=${out}`,
      process.execPath,
      ...variant.args,
    ],
    {
      cwd: variant.cwd,
      env: { PATH: process.env.PATH, ...variant.env, PORT: String(port) },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4096);
  });
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      resolve();
    });
  });
  try {
    const startedAt = Date.now();
    while (!(await peers.answersRight(port, COMMAND_PATH).catch(() => false))) {
      if (child.exitCode !== null) throw new Error(`${variant.name} exited: ${stderr}`);
      if (Date.now() - startedAt > START_DEADLINE_MS) {
        throw new Error(`${variant.name} gave no right answer within ${START_DEADLINE_MS} ms`);
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    await send(port, peers, count);
  } finally {
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), EXIT_DEADLINE_MS);
    await exited;
    clearTimeout(timer);
  }
  if (!fs.existsSync(out)) throw new Error(`${variant.name} left no cachegrind output: ${stderr}`);
  return out;
}

/** Instructions a request between two runs' outputs, split by what ran them. */
function perRequest(first: string, last: string, requests: number, dir: string): InstructionCount {
  const diff = path.join(dir, 'diff.cachegrind');
  fs.writeFileSync(diff, execFileSync('cg_diff', [first, last], { maxBuffer: 1 << 28 }));
  const annotated = execFileSync('cg_annotate', ['--threshold=0', diff], {
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
  const byFunction = annotated.split('file:function')[1] ?? '';
  let total = 0;
  let compilers = 0;
  let gc = 0;
  for (const line of byFunction.split('\n')) {
    const match = /^\s*(-?[\d,]+)\s+\(\s*-?[\d.]+%\)\s+(.*)$/.exec(line);
    if (match === null) continue;
    const count = Number(match[1]!.replaceAll(',', ''));
    total += count;
    if (COMPILER.test(match[2]!)) compilers += count;
    else if (GC.test(match[2]!)) gc += count;
  }
  const each = (value: number) => Math.round(value / requests);
  return {
    total: each(total),
    compilers: each(compilers),
    gc: each(gc),
    steady: each(total - compilers),
  };
}

export interface InstructionsResult {
  node: string;
  requests: { first: number; last: number };
  peers: Record<string, InstructionCount>;
  ratios: { steadyVsBolt: number; steadyVsFloor: number };
}

export async function benchInstructions(first: number, last: number): Promise<InstructionsResult> {
  requireValgrind();
  const peers = await startPeers();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coffeebuddy-instructions-'));
  try {
    const counts: Record<string, InstructionCount> = {};
    for (const variant of peers.variants) {
      const [a, b] = await Promise.all([
        counted(variant, peers, first, dir),
        counted(variant, peers, last, dir),
      ]);
      counts[variant.name] = perRequest(a, b, last - first, dir);
    }
    const steady = (name: string) => counts[name]!.steady;
    return {
      node: process.version,
      requests: { first, last },
      peers: counts,
      ratios: {
        steadyVsBolt: round(steady('coffeebuddy') / steady('bolt'), 2),
        steadyVsFloor: round(steady('coffeebuddy') / steady('floor'), 2),
      },
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    await peers.close();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      first: { type: 'string', default: '1000' },
      last: { type: 'string', default: '3000' },
      out: { type: 'string' },
    },
    strict: true,
  });
  const first = Number(values.first);
  const last = Number(values.last);
  if (
    !Number.isInteger(first) ||
    !Number.isInteger(last) ||
    first < 1 ||
    last <= first ||
    last > 100_000
  ) {
    throw new Error('--first and --last must be whole numbers, 1 ≤ first < last ≤ 100000');
  }
  const result = await benchInstructions(first, last);
  console.log(
    `\nInstructions a request, signed POST ${COMMAND_PATH} (/coffee help), Node ${result.node}: cachegrind, requests ${first} → ${last} over ${CONNECTIONS} connections\n`,
  );
  console.log('| peer | total | V8 compilers | of which GC (in steady) | steady |');
  console.log('|---|---|---|---|---|');
  for (const [name, c] of Object.entries(result.peers)) {
    console.log(`| ${name} | ${c.total} | ${c.compilers} | ${c.gc} | ${c.steady} |`);
  }
  console.log(
    `\nCoffeeBuddy's steady count is ${result.ratios.steadyVsBolt}× Bolt's and ${result.ratios.steadyVsFloor}× the floor's.`,
  );
  console.log(`\nwrote ${writeResult('instructions-', result, values.out)}`);
}

if (require.main === module) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  });
}
