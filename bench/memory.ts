/**
 * npm run bench:memory [-- --seconds N] [-- --out FILE]   (bench:memory:node24 on the image's Node)
 *
 * Peak RSS (VmHWM) under N seconds (default 15) of `wrk -t2 -c50` on /health/live: the
 * functions-framework hello world with default flags, and CoffeeBuddy as the image runs it with
 * each young-generation size (--max-semi-space-size) in turn, the image's own value marked.
 * Ratios against the hello world of the same run. Loopback only; bounded in time.
 */
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT, requireBuild } from '../testing/process';
import { startOryStandIn, startVaultStandIn } from '../testing/standins';
import { benchArgs } from './args';
import {
  HELLO,
  imageLike,
  type PeakRow,
  peakUnderLoad,
  requireWrk,
  round,
  writeResult,
} from './harness';

const { seconds: SECONDS, out: outArg } = benchArgs(15);
/** Young-generation sizes tried, in MB; undefined is V8's default. */
const SEMI_SPACES = [undefined, 16, 8, 4, 2];

/** NODE_OPTIONS with the image's --max-semi-space-size replaced by `mb` (or removed). */
function withSemiSpace(nodeOptions: string, mb: number | undefined): string {
  const others = nodeOptions
    .split(/\s+/)
    .filter((o) => o !== '' && !o.startsWith('--max-semi-space-size'));
  return [...others, ...(mb === undefined ? [] : [`--max-semi-space-size=${mb}`])].join(' ');
}

async function main(): Promise<void> {
  requireBuild();
  requireWrk();
  const vault = await startVaultStandIn('active');
  const ory = await startOryStandIn(true);
  const image = await imageLike(vault.url, ory.url);
  const imageOptions = image.variant.env.NODE_OPTIONS ?? '';
  const imageSemi = /--max-semi-space-size=(\d+)/.exec(imageOptions)?.[1];
  try {
    const rows: PeakRow[] = [
      await peakUnderLoad({ ...HELLO, name: 'ff-hello (default flags)' }, SECONDS),
    ];
    for (const mb of SEMI_SPACES) {
      const mark = String(mb) === imageSemi || (mb === undefined && imageSemi === undefined);
      rows.push(
        await peakUnderLoad(
          {
            ...image.variant,
            name: `coffeebuddy, semi-space ${mb === undefined ? 'default' : `${mb} MB`}${mark ? ' (image)' : ''}`,
            env: { ...image.variant.env, NODE_OPTIONS: withSemiSpace(imageOptions, mb) },
          },
          SECONDS,
        ),
      );
    }
    const base = rows[0]!;
    const table = [
      `Node ${process.version} on ${os.cpus().length} × ${os.cpus()[0]?.model.split(' ').slice(0, 2).join(' ')}, ${Math.round(os.totalmem() / 2 ** 30)} GiB; wrk -t2 -c50 -d${SECONDS}s on /health/live`,
      '',
      '| variant | peak RSS (MB) | vs hello | req/s | vs hello | p99 (ms) | errors |',
      '|---|---|---|---|---|---|---|',
      ...rows.map(
        (r) =>
          `| ${r.variant} | ${r.peakRssMb} | ${round(r.peakRssMb / base.peakRssMb, 2)} | ${r.rps} | ${round(r.rps / base.rps, 2)} | ${r.p99Ms} | ${r.errors} |`,
      ),
    ];
    console.log(table.join('\n'));
    const out = writeResult('memory-', { node: process.version, seconds: SECONDS, rows }, outArg);
    console.log(`\nwrote ${path.relative(REPO_ROOT, out)}`);
  } finally {
    image.cleanUp();
    await Promise.all([vault.close(), ory.close()]);
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
