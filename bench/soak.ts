/**
 * npm run soak [-- --seconds N] [-- --out FILE]
 *
 * 100k+ mixed requests at high concurrency against CoffeeBuddy started as the image starts it:
 * /health/live, /health/ready, /metrics and unknown paths at once, each from its own wrk, against
 * Vault and Ory stand-ins. Reports errors, p50/p99 per endpoint, RSS, and the checks the
 * stand-ins saw. Loopback only; bounded in time (and so in count).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadSettings } from '../lib/config/settings';
import { REPO_ROOT, requireBuild } from '../testing/process';
import { startOryStandIn, startVaultStandIn } from '../testing/standins';
import {
  growth,
  imageLike,
  type Load,
  requestsOn,
  requireWrk,
  round,
  sleep,
  start,
  stop,
  writeResult,
  wrk,
} from './harness';
import { rssKb } from '../testing/proc';
import { benchArgs } from './args';
import { svgPlot, trend, type Sample } from './rss-trend';

const { seconds: SECONDS, out: outArg } = benchArgs(60);
const TARGET_REQUESTS = 100_000;
const WARMUP_REQUESTS = 5_000;
const RSS_SAMPLE_MS = 5000;

/**
 * Endpoint, wrk connections, expected status. Two continuous scrapers are still hundreds of
 * scrapes a second (Prometheus scrapes a pod every 15 s or so). Past about this load the server
 * saturates and Node starves some connections for seconds, the hello world as much as CoffeeBuddy
 * (BENCHMARKS.md, "Saturation").
 */
const MIX: [string, number, number][] = [
  ['/health/live', 32, 200],
  ['/health/ready', 32, 200],
  ['/metrics', 2, 200],
  ['/no/such/path', 16, 404],
];

async function main(): Promise<void> {
  requireBuild();
  requireWrk();
  const vault = await startVaultStandIn('active');
  const ory = await startOryStandIn(true);
  const image = await imageLike(vault.url, ory.url);
  const { env } = image.variant;

  const server = await start(image.variant, ['/health/ready']);
  const pid = server.child.pid!;
  await sleep(500);
  const rssStartKb = rssKb(pid);
  await requestsOn(server.port, '/health/live', WARMUP_REQUESTS);
  const rssWarmKb = rssKb(pid);
  vault.resetCounts();
  ory.resetCounts();

  // RSS every RSS_SAMPLE_MS through the run, for the trend of its last half and the plot.
  const samples: Sample[] = [];
  const soakStarted = performance.now();
  const sample = () => {
    if (server.child.exitCode !== null) return;
    samples.push({ t: (performance.now() - soakStarted) / 1000, mb: round(rssKb(pid) / 1024) });
  };
  sample();
  const sampler = setInterval(sample, RSS_SAMPLE_MS);
  const results = await Promise.all(
    MIX.map(([endpoint, connections, status]) =>
      wrk(server.port, endpoint, SECONDS, connections, status),
    ),
  );
  clearInterval(sampler);
  sample();
  await sleep(1000);
  const alive = server.child.exitCode === null;
  if (!alive) throw new Error(`the server died during the soak (exit ${server.child.exitCode})`);
  const rssEndKb = rssKb(pid);
  const rssTrend = trend(samples);
  const rssPeakKb = rssKb(pid, 'VmHWM');
  await stop(server.child);
  await Promise.all([vault.close(), ory.close()]);
  image.cleanUp();

  const total = results.reduce((sum, r) => sum + r.requests, 0);
  const ttlMs = loadSettings(env).READINESS_CACHE_TTL_MS;
  const result = {
    date: new Date().toISOString(),
    node: process.version,
    machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${round(os.totalmem() / 2 ** 30, 0)} GiB`,
    seconds: SECONDS,
    totalRequests: total,
    endpoints: Object.fromEntries(
      MIX.map(([endpoint, connections], i) => [endpoint, { connections, ...(results[i] as Load) }]),
    ),
    rssMb: {
      afterStart: round(rssStartKb / 1024),
      afterWarmup: round(rssWarmKb / 1024),
      afterSoak: round(rssEndKb / 1024),
    },
    rssGrowthPercent: {
      fromStart: growth(rssStartKb, rssEndKb),
      fromWarmup: growth(rssWarmKb, rssEndKb),
    },
    rssLastHalf: rssTrend,
    rssPeakMb: round(rssPeakKb / 1024),
    rssSamples: samples,
    dependencyChecks: {
      vault: vault.requests,
      ory: ory.requests,
      aboutOnePerTtl: Math.ceil((SECONDS * 1000) / ttlMs),
    },
    processAlive: alive,
  };

  const lines = [
    `Node ${result.node} on ${result.machine}; ${SECONDS} s, ${total} requests`,
    '',
    '| endpoint | connections | requests | req/s | p50 (ms) | p99 (ms) | errors (wrong status / connect / read / write / timeout) |',
    '|---|---|---|---|---|---|---|',
    ...MIX.map(([endpoint, connections], i) => {
      const r = results[i]!;
      return `| ${endpoint} | ${connections} | ${r.requests} | ${Math.round(r.rps)} | ${round(r.p50Ms, 2)} | ${round(r.p99Ms, 2)} | ${r.errors} (${[r.wrongStatus, r.socket.connect, r.socket.read, r.socket.write, r.socket.timeout].join(' / ')}) |`;
    }),
    '',
    `RSS: ${result.rssMb.afterStart} MB after start, ${result.rssMb.afterWarmup} MB after ${WARMUP_REQUESTS} warm-up requests, ${result.rssMb.afterSoak} MB after the soak (growth ${result.rssGrowthPercent.fromStart} % from start, ${result.rssGrowthPercent.fromWarmup} % from warm-up)`,
    `RSS over the last half: slope ${rssTrend.slopeMbPerMin} MB/min, growth ${rssTrend.growthPercent} % (peak ${round(rssPeakKb / 1024)} MB)`,
    `checks seen by the stand-ins: Vault ${vault.requests}, Ory ${ory.requests} (duration / TTL = ${result.dependencyChecks.aboutOnePerTtl})`,
    `process alive at the end: ${alive}`,
  ];
  console.log(lines.join('\n'));
  const out = writeResult('soak-', result, outArg);
  const plot = out.replace(/\.json$/, '.svg');
  fs.writeFileSync(
    plot,
    svgPlot(
      samples,
      `CoffeeBuddy RSS, ${SECONDS} s soak, Node ${process.version} (dashed: half-way)`,
    ),
  );
  console.log(`wrote ${path.relative(REPO_ROOT, out)} and ${path.relative(REPO_ROOT, plot)}`);

  const failures = [
    ...(total < TARGET_REQUESTS
      ? [`only ${total} requests (< ${TARGET_REQUESTS}): raise --seconds`]
      : []),
    ...results.flatMap((r, i) => (r.errors > 0 ? [`${r.errors} errors on ${MIX[i]![0]}`] : [])),
    ...(rssTrend.growthPercent >= 5
      ? [`RSS grew ${rssTrend.growthPercent} % over the last half (target < 5 %)`]
      : []),
  ];
  if (failures.length > 0) {
    console.error(`\nsoak failed: ${failures.join('; ')}`);
    process.exitCode = 1;
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
