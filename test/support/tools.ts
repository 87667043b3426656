import { execFileSync, spawnSync } from 'node:child_process';

/** The path of a command on PATH, or undefined. */
export function findCommand(name: string): string | undefined {
  try {
    return (
      execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim() || undefined
    );
  } catch {
    return undefined;
  }
}

/**
 * Chooses `it` when the tool is installed; otherwise skips with a message saying so, except under
 * CI=true, where a missing tool is a failure (CI installs it).
 */
export function itWithCommand(name: string, install: string): jest.It {
  if (findCommand(name) !== undefined) return it;
  if (process.env.CI === 'true') {
    return ((title: string) => {
      it(title, () => {
        throw new Error(`${name} is required under CI=true; install it with: ${install}`);
      });
    }) as unknown as jest.It;
  }
  process.stderr.write(`SKIPPED: ${name} not found (install it with: ${install})\n`);
  return it.skip;
}

export function promtoolCheckMetrics(text: string): { status: number | null; output: string } {
  const result = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}
