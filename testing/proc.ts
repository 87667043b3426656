import { spawnSync } from 'node:child_process';
import fs from 'node:fs';

/** Resident memory now (VmRSS), or its peak over the process's life (VmHWM), in kB (Linux). */
export function rssKb(pid: number, field: 'VmRSS' | 'VmHWM' = 'VmRSS'): number {
  const line = fs
    .readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${field}:`));
  if (line === undefined) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(/(\d+)/.exec(line)?.[1]);
}

/** The peak resident memory over the process's life (VmHWM), in kB. */
export const peakRssKb = (pid: number): number => rssKb(pid, 'VmHWM');

const CLOCK_TICKS_PER_SECOND = Number(
  spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim() || 100,
);

/** CPU time (utime + stime) another process has used so far, from /proc/<pid>/stat, in µs. */
export function processCpuUs(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may hold spaces: utime is the 14th
  // field of the line, stime the 15th.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1e6) / CLOCK_TICKS_PER_SECOND;
}
