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
 * Chooses `it` when what a test needs is here; otherwise skips with a `SKIPPED:` line naming what
 * was not checked, except under CI=true, where CI provides it and its absence is a failure.
 */
export function itWhen(available: boolean, missing: string): jest.It {
  if (available) return it;
  if (process.env.CI === 'true') {
    return ((title: string) => {
      it(title, () => {
        throw new Error(`required under CI=true: ${missing}`);
      });
    }) as unknown as jest.It;
  }
  process.stderr.write(`SKIPPED: ${missing}\n`);
  return it.skip;
}

/** `it` when the command is installed; see itWhen. */
export function itWithCommand(name: string, install: string): jest.It {
  return itWhen(findCommand(name) !== undefined, `${name} not found (install it with: ${install})`);
}

export function promtoolCheckMetrics(text: string): { status: number | null; output: string } {
  const result = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

/**
 * Waits until `condition` holds, polling every 5 ms; fails after timeoutMs. Each poll follows one
 * turn of I/O, so that a starved test process reads what has arrived before it calls time up.
 */
export async function eventually(
  condition: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(() => setImmediate(resolve), 5));
  }
}
