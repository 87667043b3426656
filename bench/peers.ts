/**
 * CoffeeBuddy against its peer, for `npm run bench` (and alone, `npm run bench:peers`): the same
 * signed `/coffee help` slash command answered by
 * - coffeebuddy: the production entry (`node dist/main.cjs`), started as the image starts it, the
 *   signing secret read from a Vault stand-in;
 * - bolt: an app written with Bolt for JavaScript, `HTTPReceiver` (bench/peers/bolt.js);
 * - floor: bare `node:http` doing only the body read, the HMAC check and the answer
 *   (bench/peers/floor.js).
 * Same Node, same NODE_ENV and NODE_OPTIONS (the image's), same request bytes, 127.0.0.1 only.
 * Cold start is spawn → the first 200 with the expected body, median of alternating rounds. Load
 * is wrk -t2 -c50 on a fresh server after a warm-up, alternating rounds, medians; every answer
 * must be 200 with exactly the expected body, anything else is an error. Peak RSS is VmHWM once
 * the load ends. Every loop is bounded in count and time.
 */
import os from 'node:os';
import path from 'node:path';
import { coffeeBuddyHandlers } from '../functions/features';
import { signSlackRequest } from '../lib/slack/signature';
import { REPO_ROOT, requireBuild } from '../testing/process';
import { peakRssKb } from '../testing/proc';
import { startOryStandIn, startVaultStandIn } from '../testing/standins';
import { benchArgs } from './args';
import {
  answerOf,
  CONCURRENCY,
  imageLike,
  type ReadyCheck,
  median,
  requireWrk,
  round,
  start,
  stop,
  type Variant,
  writeResult,
  wrk,
  type WrkRequest,
} from './harness';

const COMMAND_PATH = '/slack/commands';
const SECRET = 'bench-peers-signing-secret';
const VAULT_TOKEN = 'hvs.bench-peers';
const SECRET_PATH = 'coffeebuddy/slack';
/** The goals: CoffeeBuddy's figure over Bolt's (or the floor's). */
export const GOALS = {
  coldStartVsBolt: { atMost: 0.4 },
  rpsVsBolt: { atLeast: 1.5 },
  rpsVsFloor: { atLeast: 0.6 },
  peakRssVsBolt: { atMost: 0.9 },
} as const;

export interface PeerFigures {
  coldStartMs: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  peakRssMb: number;
  requests: number;
  /** Wrong statuses, wrong bodies and socket errors, over every round. */
  errors: number;
  wrongBody: number;
}

export interface PeersResult {
  node: string;
  machine: string;
  loadAverage: { before: number[]; after: number[] };
  rounds: { coldStart: number; load: number; loadSeconds: number };
  peers: Record<string, PeerFigures>;
  ratios: Record<keyof typeof GOALS, number> & { peakRssVsFloor: number; coldStartVsFloor: number };
}

/** A slash command as Slack posts it: `/coffee help` from one user in one channel. */
function commandBody(): string {
  return new URLSearchParams({
    token: 'bench-verification-token',
    team_id: 'T0BENCH01',
    team_domain: 'coffeebuddy-bench',
    channel_id: 'C0BENCH01',
    channel_name: 'coffee',
    user_id: 'U0BENCH01',
    user_name: 'bench',
    command: '/coffee',
    text: 'help',
    api_app_id: 'A0BENCH01',
    is_enterprise_install: 'false',
    response_url: 'https://hooks.slack.com/commands/T0BENCH01/1/bench',
    trigger_id: '1.2.bench',
  }).toString();
}

/** What every peer must answer: CoffeeBuddy's own help text, in Slack's ephemeral answer. */
function expectedAnswer(): { text: string; body: string } {
  const text = coffeeBuddyHandlers().helpText();
  return { text, body: JSON.stringify({ response_type: 'ephemeral', text }) };
}

const loadAverage = () => os.loadavg().map((load) => round(load, 2));

/** The three peers, ready to start, and the one request they all answer. */
export interface Peers {
  /** coffeebuddy (as the image starts it), bolt and floor, in that order. */
  variants: Variant[];
  /** The signed `/coffee help`, with the body every peer must answer it with. */
  signed: WrkRequest & { expectBody: string };
  /** Whether the peer on `port` answers the signed command right. */
  answersRight: ReadyCheck;
  /** Stops the Vault and Ory stand-ins and removes the compile cache. */
  close: () => Promise<void>;
}

/**
 * Starts what the peers need (Vault and Ory stand-ins, the image's compile cache) and describes
 * them; also for bench/instructions.ts.
 */
export async function startPeers(): Promise<Peers> {
  const answer = expectedAnswer();
  const body = commandBody();
  // Signed once: the run is far shorter than Slack's five-minute window.
  const timestamp = String(Math.floor(Date.now() / 1000));
  const signed = {
    method: 'POST',
    body,
    contentType: 'application/x-www-form-urlencoded',
    headers: {
      'X-Slack-Request-Timestamp': timestamp,
      'X-Slack-Signature': signSlackRequest(SECRET, timestamp, body),
    },
    expectBody: answer.body,
  };
  const answersRight = async (port: number, urlPath: string) => {
    const got = await answerOf(port, urlPath, {
      method: signed.method,
      headers: { ...signed.headers, 'Content-Type': signed.contentType },
      body: signed.body,
    });
    return got.status === 200 && got.body === answer.body;
  };

  const vault = await startVaultStandIn('active');
  vault.tokens.set(VAULT_TOKEN, Infinity);
  vault.secrets[SECRET_PATH] = { signing_secret: SECRET };
  const ory = await startOryStandIn(true);
  const image = await imageLike(vault.url, ory.url);
  const { NODE_ENV, NODE_OPTIONS } = image.variant.env;
  const peerEnv = {
    NODE_ENV,
    NODE_OPTIONS,
    SLACK_SIGNING_SECRET: SECRET,
    HELP_TEXT: answer.text,
  };
  return {
    variants: [
      {
        ...image.variant,
        env: {
          ...image.variant.env,
          VAULT_TOKEN,
          SLACK_SIGNING_SECRET_VAULT_PATH: SECRET_PATH,
        },
      },
      { name: 'bolt', args: ['bench/peers/bolt.js'], cwd: REPO_ROOT, env: peerEnv },
      { name: 'floor', args: ['bench/peers/floor.js'], cwd: REPO_ROOT, env: peerEnv },
    ],
    signed,
    answersRight,
    close: async () => {
      await Promise.all([vault.close(), ory.close()]);
      image.cleanUp();
    },
  };
}

export async function benchPeers(quick: boolean): Promise<PeersResult> {
  const coldRounds = quick ? 1 : 15;
  const loadRounds = quick ? 1 : 3;
  const loadSeconds = quick ? 1 : 5;
  const warmupSeconds = 1;
  const loadBefore = loadAverage();

  const { variants, signed, answersRight, close } = await startPeers();
  try {
    // Cold start, alternating so that drift in the machine's load hits every peer alike.
    const cold = new Map<Variant, number[]>(variants.map((v) => [v, []]));
    for (let r = 0; r < coldRounds; r += 1) {
      for (const variant of variants) {
        const started = await start(variant, [COMMAND_PATH], answersRight);
        cold.get(variant)!.push(started.firstOk[COMMAND_PATH]!);
        await stop(started.child);
      }
    }

    // Load and peak RSS: a fresh server each round, warmed up, then measured.
    const loads = new Map<Variant, { rps: number; p50Ms: number; p99Ms: number }[]>(
      variants.map((v) => [v, []]),
    );
    const peaks = new Map<Variant, number[]>(variants.map((v) => [v, []]));
    const counts = new Map(variants.map((v) => [v, { requests: 0, errors: 0, wrongBody: 0 }]));
    for (let r = 0; r < loadRounds; r += 1) {
      for (const variant of variants) {
        const server = await start(variant, [COMMAND_PATH], answersRight);
        try {
          const count = counts.get(variant)!;
          for (const [seconds, measured] of [
            [warmupSeconds, false],
            [loadSeconds, true],
          ] as const) {
            const load = await wrk(server.port, COMMAND_PATH, seconds, CONCURRENCY, 200, 2, signed);
            count.errors += load.errors;
            count.wrongBody += load.wrongBody;
            if (!measured) continue;
            count.requests += load.requests;
            loads.get(variant)!.push({ rps: load.rps, p50Ms: load.p50Ms, p99Ms: load.p99Ms });
          }
          peaks.get(variant)!.push(peakRssKb(server.child.pid!) / 1024);
        } finally {
          await stop(server.child);
        }
      }
    }

    const peers: Record<string, PeerFigures> = {};
    for (const variant of variants) {
      const runs = loads.get(variant)!;
      peers[variant.name] = {
        coldStartMs: round(median(cold.get(variant)!)),
        rps: Math.round(median(runs.map((l) => l.rps))),
        p50Ms: round(median(runs.map((l) => l.p50Ms)), 2),
        p99Ms: round(median(runs.map((l) => l.p99Ms)), 2),
        peakRssMb: round(median(peaks.get(variant)!)),
        ...counts.get(variant)!,
      };
    }
    const cb = peers.coffeebuddy!;
    const bolt = peers.bolt!;
    const floor = peers.floor!;
    return {
      node: process.version,
      machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${round(os.totalmem() / 2 ** 30, 0)} GiB`,
      loadAverage: { before: loadBefore, after: loadAverage() },
      rounds: { coldStart: coldRounds, load: loadRounds, loadSeconds },
      peers,
      ratios: {
        coldStartVsBolt: round(cb.coldStartMs / bolt.coldStartMs, 2),
        coldStartVsFloor: round(cb.coldStartMs / floor.coldStartMs, 2),
        rpsVsBolt: round(cb.rps / bolt.rps, 2),
        rpsVsFloor: round(cb.rps / floor.rps, 2),
        peakRssVsBolt: round(cb.peakRssMb / bolt.peakRssMb, 2),
        peakRssVsFloor: round(cb.peakRssMb / floor.peakRssMb, 2),
      },
    };
  } finally {
    await close();
  }
}

const met = (value: number, goal: { atMost: number } | { atLeast: number }) =>
  'atMost' in goal ? value <= goal.atMost : value >= goal.atLeast;

/** The result as Markdown tables. */
export function peersLines(r: PeersResult): string[] {
  const goalRow = (label: string, key: keyof typeof GOALS) => {
    const goal: { atMost: number } | { atLeast: number } = GOALS[key];
    const target = 'atMost' in goal ? `≤ ${goal.atMost}` : `≥ ${goal.atLeast}`;
    return `| ${label} | ${r.ratios[key]} ${met(r.ratios[key], goal) ? '✓' : '✗'} | ${target} |`;
  };
  return [
    '',
    `CoffeeBuddy against Bolt for JavaScript: signed POST ${COMMAND_PATH} (/coffee help); Node ${r.node} on ${r.machine}`,
    `cold start: median of ${r.rounds.coldStart} alternating rounds; load: wrk -t2 -c${CONCURRENCY}, ${r.rounds.loadSeconds} s after a warm-up, fresh server, median of ${r.rounds.load} rounds; load average ${r.loadAverage.before.join(', ')} before, ${r.loadAverage.after.join(', ')} after`,
    '',
    '| peer | cold start → first 200 (ms) | req/s | p50 (ms) | p99 (ms) | peak RSS (MB) | requests | errors (wrong body) |',
    '|---|---|---|---|---|---|---|---|',
    ...Object.entries(r.peers).map(
      ([name, p]) =>
        `| ${name} | ${p.coldStartMs} | ${p.rps} | ${p.p50Ms} | ${p.p99Ms} | ${p.peakRssMb} | ${p.requests} | ${p.errors} (${p.wrongBody}) |`,
    ),
    '',
    '| ratio | value | goal |',
    '|---|---|---|',
    goalRow('cold start vs Bolt', 'coldStartVsBolt'),
    goalRow('req/s vs Bolt', 'rpsVsBolt'),
    goalRow('req/s vs the floor', 'rpsVsFloor'),
    goalRow('peak RSS vs Bolt', 'peakRssVsBolt'),
    `| cold start vs the floor | ${r.ratios.coldStartVsFloor} | |`,
    `| peak RSS vs the floor | ${r.ratios.peakRssVsFloor} | |`,
  ];
}

async function main(): Promise<void> {
  const { quick, out } = benchArgs(1);
  requireBuild();
  requireWrk();
  const result = await benchPeers(quick);
  console.log(peersLines(result).join('\n'));
  const file = writeResult('peers-', result, out);
  console.log(`\nwrote ${path.relative(REPO_ROOT, file)}`);
}

if (require.main === module) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  });
}
