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
