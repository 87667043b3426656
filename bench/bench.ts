/**
 * npm run bench [-- --quick] [-- --out FILE]
 *
 * Start-up, probe cost and memory of CoffeeBuddy beside two references measured in the same run:
 * a bare Node http server (the floor) and a functions-framework hello world (the framework's
 * floor); then Slack work through Knative Eventing (eventing.ts) and the signed slash command
 * against Bolt for JavaScript (peers.ts). Variants alternate (A B C A B C …); figures are medians; ratios are against the
 * references. Loopback only, every loop bounded in count and time.
 */
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT, requireBuild } from '../testing/process';
import { startOryStandIn, startVaultStandIn } from '../testing/standins';
import {
  growth,
  HELLO,
  imageLike,
  type Load,
  median,
  type PeakRow,
  peakUnderLoad,
  requestsOn,
  requireWrk,
  round,
  sleep,
  start,
  type Started,
  stop,
  type Variant,
  writeResult,
  wrk,
} from './harness';
import { rssKb } from '../testing/proc';
import { benchArgs } from './args';
import { benchEventing, eventingLines, type EventingResult } from './eventing';
import { benchPeers, peersLines, type PeersResult } from './peers';

const { quick, out: outArg } = benchArgs(1);
const ROUNDS = quick ? 1 : 15;
const LOAD_ROUNDS = quick ? 1 : 3;
const LOAD_SECONDS = quick ? 1 : 5;
const RSS_REQUESTS = quick ? 5_000 : 50_000;
const WARMUP_REQUESTS = quick ? 500 : 5_000;
const PROBE_SECONDS = quick ? 2 : 10;
const PROBE_CONCURRENCY = 200;
/** Peak RSS is read after this long under wrk -t2 -c50 on /health/live. */
const PEAK_SECONDS = quick ? 2 : 15;

interface Ratios {
  coldStartLiveVsHello: number;
  liveRpsVsHello: number;
  readyRpsVsHello: number;
  readyP99VsLiveP99: number;
  rssAfterStartVsHello: number;
  rssGrowthPercent: number;
  rssGrowthAfterWarmupPercent: number;
  helloRssGrowthPercent: number;
  rssGrowthSecondBatchPercent: number;
  helloRssGrowthSecondBatchPercent: number;
  peakRssVsHello: number;
  peakRpsVsHello: number;
}

interface Memory {
  afterStartKb: number;
  afterWarmupKb: number;
  /** After RSS_REQUESTS requests in all. */
  afterLoadKb: number;
  /** After RSS_REQUESTS more. */
  afterDoubleLoadKb: number;
  requests: number;
  totalRequests: number;
}

async function main(): Promise<void> {
  requireBuild();
  requireWrk();
  const vault = await startVaultStandIn('active');
  const ory = await startOryStandIn(true);
  const image = await imageLike(vault.url, ory.url);
  const variants: Variant[] = [
    { name: 'bare-node', args: ['bench/fixtures/bare.js'], cwd: REPO_ROOT, env: {} },
    HELLO,
    image.variant,
  ];
  const coffeebuddy = variants[2]!;

  // Cold start, alternating variants so drift in machine load hits all of them alike.
  const cold: Record<string, number[]> = {
    'bare-node': [],
    'ff-hello': [],
    coffeebuddy: [],
    'coffeebuddy-ready': [],
  };
  /** CoffeeBuddy's start-up by phase, from its `listening` line, per round. */
  const startupPhases: Record<string, number[]> = {};
  for (let round = 0; round < ROUNDS; round += 1) {
    for (const variant of variants) {
      const paths = variant === coffeebuddy ? ['/health/live', '/health/ready'] : ['/health/live'];
      const started = await start(variant, paths);
      cold[variant.name]!.push(started.firstOk['/health/live']!);
      if (variant === coffeebuddy) {
        cold['coffeebuddy-ready']!.push(started.firstOk['/health/ready']!);
        const phases = started.listening()?.startupPhasesMs as Record<string, number> | undefined;
        for (const [phase, ms] of Object.entries(phases ?? {})) {
          (startupPhases[phase] ??= []).push(ms);
        }
      }
      await stop(started.child);
    }
  }

  // Throughput, latency and memory: every variant up at once; (variant, endpoint) pairs take
  // turns round by round, so drift in machine load hits them alike; medians of the rounds.
  const servers = new Map<Variant, Started>();
  for (const variant of variants) servers.set(variant, await start(variant, ['/health/live']));
  await sleep(500);
  const memory = new Map<Variant, Partial<Memory> & { requests: number }>();
  for (const [variant, server] of servers) {
    memory.set(variant, { afterStartKb: rssKb(server.child.pid!), requests: 0 });
  }
  // V8 sizes its heap in the first thousands of requests.
  for (const [variant, server] of servers) {
    const m = memory.get(variant)!;
    m.requests += await requestsOn(server.port, '/health/live', WARMUP_REQUESTS);
    m.afterWarmupKb = rssKb(server.child.pid!);
  }
  const pairs: [Variant, string][] = [
    ...variants.map((v): [Variant, string] => [v, '/health/live']),
    [coffeebuddy, '/health/ready'],
    [coffeebuddy, '/metrics'],
  ];
  const rounds = new Map<string, Load[]>();
  for (let round = 0; round < LOAD_ROUNDS; round += 1) {
    for (const [variant, endpoint] of pairs) {
      const result = await wrk(servers.get(variant)!.port, endpoint, LOAD_SECONDS);
      memory.get(variant)!.requests += result.requests;
      const key = `${variant.name} ${endpoint}`;
      rounds.set(key, [...(rounds.get(key) ?? []), result]);
    }
  }
  const load: Record<string, Record<string, Load>> = {};
  for (const [variant, endpoint] of pairs) {
    const results = rounds.get(`${variant.name} ${endpoint}`)!;
    load[variant.name] = {
      ...load[variant.name],
      [endpoint]: {
        requests: results.reduce((sum, r) => sum + r.requests, 0),
        rps: median(results.map((r) => r.rps)),
        p50Ms: median(results.map((r) => r.p50Ms)),
        p99Ms: median(results.map((r) => r.p99Ms)),
        errors: results.reduce((sum, r) => sum + r.errors, 0),
        wrongStatus: results.reduce((sum, r) => sum + r.wrongStatus, 0),
        wrongBody: results.reduce((sum, r) => sum + r.wrongBody, 0),
        socket: {
          connect: results.reduce((sum, r) => sum + r.socket.connect, 0),
          read: results.reduce((sum, r) => sum + r.socket.read, 0),
          write: results.reduce((sum, r) => sum + r.socket.write, 0),
          timeout: results.reduce((sum, r) => sum + r.socket.timeout, 0),
        },
      },
    };
  }
  // Top each up to RSS_REQUESTS, then RSS_REQUESTS more: a leak keeps growing, a sized heap stays.
  const rss: Record<string, Memory> = {};
  for (const [variant, server] of servers) {
    const m = memory.get(variant)!;
    const topUp = async (target: number) => {
      const since = performance.now();
      while (m.requests < target && performance.now() - since < 120_000) {
        m.requests += (await wrk(server.port, '/health/live', 1)).requests;
      }
      await sleep(500);
      return rssKb(server.child.pid!);
    };
    const afterLoadKb = await topUp(RSS_REQUESTS);
    const requestsAtLoad = m.requests;
    const afterDoubleLoadKb = await topUp(requestsAtLoad + RSS_REQUESTS);
    rss[variant.name] = {
      afterStartKb: m.afterStartKb!,
      afterWarmupKb: m.afterWarmupKb!,
      afterLoadKb,
      afterDoubleLoadKb,
      requests: requestsAtLoad,
      totalRequests: m.requests,
    };
    await stop(server.child);
  }

  // Peak RSS under sustained load, each variant fresh: what the pod's memory limit must hold.
  const peak: Record<string, PeakRow> = {};
  for (const variant of variants.filter((v) => v.name !== 'bare-node')) {
    peak[variant.name] = await peakUnderLoad(variant, PEAK_SECONDS);
  }

  // Probe amplification: what 200 concurrent readiness probers cost Vault and Ory.
  const prober = await start(coffeebuddy, ['/health/ready']);
  vault.resetCounts();
  ory.resetCounts();
  const probes = await wrk(prober.port, '/health/ready', PROBE_SECONDS, PROBE_CONCURRENCY);
  const ttlMs = Number(coffeebuddy.env.READINESS_CACHE_TTL_MS ?? 1000);
  const amplification = {
    seconds: PROBE_SECONDS,
    probes: probes.requests,
    probeErrors: probes.errors,
    vaultRequests: vault.requests,
    oryRequests: ory.requests,
    allowedPerDependency: Math.ceil((PROBE_SECONDS * 1000) / ttlMs) + 1,
  };
  await stop(prober.child);
  await Promise.all([vault.close(), ory.close()]);
  image.cleanUp();

  // Slack work through Knative Eventing: the acknowledgement with K_SINK, the worker's events/s.
  const eventing = await benchEventing(quick);

  // The signed slash command against Bolt for JavaScript and a bare node:http floor.
  const peers = await benchPeers(quick);

  const coldMs = Object.fromEntries(Object.entries(cold).map(([k, v]) => [k, round(median(v))]));
  const helloLive = load['ff-hello']!['/health/live']!;
  const cbLoad = load.coffeebuddy!;
  const ratios: Ratios = {
    coldStartLiveVsHello: round(coldMs.coffeebuddy! / coldMs['ff-hello']!, 2),
    liveRpsVsHello: round(cbLoad['/health/live']!.rps / helloLive.rps, 2),
    readyRpsVsHello: round(cbLoad['/health/ready']!.rps / helloLive.rps, 2),
    readyP99VsLiveP99: round(cbLoad['/health/ready']!.p99Ms / cbLoad['/health/live']!.p99Ms, 2),
    rssAfterStartVsHello: round(rss.coffeebuddy!.afterStartKb / rss['ff-hello']!.afterStartKb, 2),
    peakRssVsHello: round(peak.coffeebuddy!.peakRssMb / peak['ff-hello']!.peakRssMb, 2),
    peakRpsVsHello: round(peak.coffeebuddy!.rps / peak['ff-hello']!.rps, 2),
    rssGrowthPercent: growth(rss.coffeebuddy!.afterStartKb, rss.coffeebuddy!.afterLoadKb),
    rssGrowthAfterWarmupPercent: growth(
      rss.coffeebuddy!.afterWarmupKb,
      rss.coffeebuddy!.afterLoadKb,
    ),
    helloRssGrowthPercent: growth(rss['ff-hello']!.afterStartKb, rss['ff-hello']!.afterLoadKb),
    rssGrowthSecondBatchPercent: growth(
      rss.coffeebuddy!.afterLoadKb,
      rss.coffeebuddy!.afterDoubleLoadKb,
    ),
    helloRssGrowthSecondBatchPercent: growth(
      rss['ff-hello']!.afterLoadKb,
      rss['ff-hello']!.afterDoubleLoadKb,
    ),
  };
  const result = {
    date: new Date().toISOString(),
    node: process.version,
    machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${round(os.totalmem() / 2 ** 30, 0)} GiB, ${os.platform()} ${os.release()}`,
    quick,
    rounds: ROUNDS,
    coldStartMedianMs: coldMs,
    startupPhasesMedianMs: Object.fromEntries(
      Object.entries(startupPhases).map(([phase, values]) => [phase, round(median(values), 1)]),
    ),
    load,
    rss,
    peak,
    amplification,
    ratios,
    eventing,
    peers,
  };
  printTable(result);
  const out = writeResult('', result, outArg);
  console.log(`\nwrote ${path.relative(REPO_ROOT, out)}`);
}

function printTable(r: {
  node: string;
  machine: string;
  rounds: number;
  coldStartMedianMs: Record<string, number>;
  startupPhasesMedianMs: Record<string, number>;
  load: Record<string, Record<string, Load>>;
  rss: Record<string, Memory>;
  peak: Record<string, PeakRow>;
  amplification: Record<string, number>;
  ratios: Ratios;
  eventing: EventingResult | undefined;
  peers: PeersResult;
}): void {
  const lines = [
    `Node ${r.node} on ${r.machine}; cold starts: median of ${r.rounds} alternating rounds`,
    '',
    '| variant | cold start → /health/live (ms) | endpoint | req/s | p50 (ms) | p99 (ms) | errors | RSS after start / warm-up / 50k / 100k requests (MB) |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const [name, endpoints] of Object.entries(r.load)) {
    for (const [endpoint, l] of Object.entries(endpoints)) {
      const mem = r.rss[name]!;
      lines.push(
        `| ${name} | ${r.coldStartMedianMs[name]} | ${endpoint} | ${Math.round(l.rps)} | ${round(l.p50Ms, 2)} | ${round(l.p99Ms, 2)} | ${l.errors} | ${[mem.afterStartKb, mem.afterWarmupKb, mem.afterLoadKb, mem.afterDoubleLoadKb].map((kb) => round(kb / 1024)).join(' / ')} |`,
      );
    }
  }
  lines.push(
    '',
    `coffeebuddy cold start → first 200 on /health/ready: ${r.coldStartMedianMs['coffeebuddy-ready']} ms`,
    `coffeebuddy start-up by phase (median ms, from its listening line): ${Object.entries(
      r.startupPhasesMedianMs,
    )
      .map(([phase, ms]) => `${phase} ${ms}`)
      .join(', ')}`,
    `peak RSS under wrk -t2 -c50 on /health/live: ${Object.values(r.peak)
      .map((p) => `${p.variant} ${p.peakRssMb} MB at ${p.rps} req/s`)
      .join(', ')}`,
    `probe amplification: ${r.amplification.probes} probes in ${r.amplification.seconds} s reached Vault ${r.amplification.vaultRequests}× and Ory ${r.amplification.oryRequests}× (allowed ≤ ${r.amplification.allowedPerDependency} each)`,
    '',
    '| ratio | value | target |',
    '|---|---|---|',
    `| cold start /health/live vs ff hello | ${r.ratios.coldStartLiveVsHello} | ≤ 0.5 |`,
    `| /health/live req/s vs ff hello | ${r.ratios.liveRpsVsHello} | ≥ 0.95 |`,
    `| cached /health/ready req/s vs ff hello /health/live | ${r.ratios.readyRpsVsHello} | ≥ 0.9 |`,
    `| cached /health/ready p99 vs /health/live p99 | ${r.ratios.readyP99VsLiveP99} | ≤ 1.2 |`,
    `| RSS after start vs ff hello | ${r.ratios.rssAfterStartVsHello} | ≤ 1.1 |`,
    `| peak RSS under load vs ff hello (${r.peak.coffeebuddy?.peakRssMb} MB) | ${r.ratios.peakRssVsHello} | ≤ 0.7 and ≤ 170 MB |`,
    `| req/s under that load vs ff hello | ${r.ratios.peakRpsVsHello} | ≥ 0.9 |`,
    `| RSS growth after load, from start (%) | ${r.ratios.rssGrowthPercent} (ff hello: ${r.ratios.helloRssGrowthPercent}) | < 10 |`,
    `| RSS growth after load, from warm-up (%) | ${r.ratios.rssGrowthAfterWarmupPercent} | |`,
    `| RSS growth over a second 50k requests (%) | ${r.ratios.rssGrowthSecondBatchPercent} (ff hello: ${r.ratios.helloRssGrowthSecondBatchPercent}) | |`,
  );
  if (r.eventing !== undefined) lines.push(...eventingLines(r.eventing));
  lines.push(...peersLines(r.peers));
  console.log(lines.join('\n'));
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
