/**
 * npm run profile:summary -- <file.cpuprofile> [--top N]
 *
 * Where a V8 CPU profile (node --cpu-prof) spends its time: self time by function and by package
 * (node_modules/<package>, else the source file; Node's own modules by file; V8's pseudo-frames
 * such as (garbage collector) as they are). Positions in a bundle with a source map beside it
 * (dist/main.cjs.map) are mapped back to their original files first, so the bundle's time is
 * split by the package it came from. Idle time is shown but left out of the percentages.
 */
import fs from 'node:fs';
import { SourceMap } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface Profile {
  nodes: { id: number; callFrame: CallFrame }[];
  samples: number[];
  timeDeltas: number[];
}

interface Place {
  /** The function, with its original file and line. */
  fn: string;
  /** The package or file it belongs to. */
  owner: string;
}

const IDLE = '(idle)';

/** node_modules/<package> (scoped or not) of a path, if it is inside one. */
function packageOf(file: string): string | undefined {
  const at = file.lastIndexOf('node_modules/');
  if (at < 0) return undefined;
  const [first = '', second = ''] = file.slice(at + 'node_modules/'.length).split('/');
  return first.startsWith('@') ? `${first}/${second}` : first;
}

/** Source maps of the profile's files, read once; undefined for a file without one. */
function sourceMaps(): (file: string) => SourceMap | undefined {
  const maps = new Map<string, SourceMap | undefined>();
  return (file) => {
    if (!maps.has(file)) {
      const mapFile = `${file}.map`;
      maps.set(
        file,
        fs.existsSync(mapFile)
          ? new SourceMap(JSON.parse(fs.readFileSync(mapFile, 'utf8')) as never)
          : undefined,
      );
    }
    return maps.get(file);
  };
}

function placeOf(frame: CallFrame, mapOf: (file: string) => SourceMap | undefined): Place {
  const name = frame.functionName || '(anonymous)';
  if (frame.url === '') return { fn: name, owner: name.startsWith('(') ? name : '(native)' };
  if (frame.url.startsWith('node:')) {
    return { fn: `${name} ${frame.url}:${frame.lineNumber + 1}`, owner: frame.url };
  }
  let file = frame.url.startsWith('file:') ? fileURLToPath(frame.url) : frame.url;
  let line = frame.lineNumber + 1;
  const entry = mapOf(file)?.findEntry(frame.lineNumber, frame.columnNumber);
  if (entry !== undefined && 'originalSource' in entry) {
    const source = entry.originalSource;
    file = source.startsWith('file:')
      ? fileURLToPath(source)
      : path.resolve(path.dirname(file), source);
    line = entry.originalLine + 1;
  }
  const relative = path.relative(process.cwd(), file);
  return { fn: `${name} ${relative}:${line}`, owner: packageOf(file) ?? relative };
}

function summarise(profile: Profile, top: number): string {
  const mapOf = sourceMaps();
  const places = new Map(profile.nodes.map((node) => [node.id, placeOf(node.callFrame, mapOf)]));
  const byFn = new Map<string, number>();
  const byOwner = new Map<string, number>();
  let idleUs = 0;
  let busyUs = 0;
  // A sample's time is the gap until the next sample; the last one has none to measure.
  for (let i = 0; i + 1 < profile.samples.length; i += 1) {
    const place = places.get(profile.samples[i]!)!;
    const us = profile.timeDeltas[i + 1]!;
    if (place.fn === IDLE) {
      idleUs += us;
      continue;
    }
    busyUs += us;
    byFn.set(place.fn, (byFn.get(place.fn) ?? 0) + us);
    byOwner.set(place.owner, (byOwner.get(place.owner) ?? 0) + us);
  }
  const ms = (us: number) => (us / 1000).toFixed(1);
  const rows = (totals: Map<string, number>) =>
    [...totals]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([key, us]) => `| ${ms(us)} | ${((100 * us) / busyUs).toFixed(1)} | ${key} |`);
  return [
    `busy ${ms(busyUs)} ms, idle ${ms(idleUs)} ms, ${profile.samples.length} samples`,
    '',
    `| self ms | % of busy | package or file (top ${top}) |`,
    '|---|---|---|',
    ...rows(byOwner),
    '',
    `| self ms | % of busy | function (top ${top}) |`,
    '|---|---|---|',
    ...rows(byFn),
  ].join('\n');
}

const { values, positionals } = parseArgs({
  options: { top: { type: 'string', default: '25' } },
  allowPositionals: true,
  strict: true,
});
const top = Number(values.top);
if (positionals.length !== 1 || !Number.isInteger(top) || top < 1) {
  console.error('usage: npm run profile:summary -- <file.cpuprofile> [--top N]');
  process.exit(2);
}
const profile = JSON.parse(fs.readFileSync(positionals[0]!, 'utf8')) as Profile;
console.log(summarise(profile, top));
