import { UpstreamError } from '../../lib/errors';
import { createLogger } from '../../lib/logger';
import { DeadDepth } from '../../lib/slack/dead-depth';

/** The gauge's reader with a count of the test's own and a clock the test moves. */
function depth(count: () => Promise<number>, timeoutMs = 50) {
  let now = 0;
  const logs: Record<string, unknown>[] = [];
  const calls = { n: 0 };
  const reader = new DeadDepth({
    count: () => {
      calls.n += 1;
      return count();
    },
    timeoutMs,
    ttlMs: 5000,
    logger: createLogger('debug', (line) => logs.push(JSON.parse(line) as Record<string, unknown>)),
    now: () => now,
  });
  return {
    reader,
    logs,
    calls,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

describe('DeadDepth, the dead-letter gauge’s reader', () => {
  it('reuses a count for its TTL, then counts again; concurrent reads share one count', async () => {
    let value = 3;
    const { reader, calls, advance } = depth(() => Promise.resolve(value));
    expect(await Promise.all([reader.read(), reader.read()])).toEqual([3, 3]);
    value = 0;
    advance(4999);
    expect(await reader.read()).toBe(3);
    expect(calls.n).toBe(1);
    advance(1);
    expect(await reader.read()).toBe(0);
    expect(calls.n).toBe(2);
  });

  it('a failing count reads NaN, is logged once with its reason, and is not retried within the TTL', async () => {
    let fail = true;
    const { reader, logs, calls, advance } = depth(() =>
      fail ? Promise.reject(new UpstreamError('cannot reach PostgreSQL')) : Promise.resolve(2),
    );
    expect(await reader.read()).toBeNaN();
    expect(logs.map((l) => l.msg)).toEqual(['slack dead letters not counted']);
    advance(5000);
    expect(await reader.read()).toBeNaN();
    expect(calls.n).toBe(2);
    expect(await reader.read()).toBeNaN();
    expect(calls.n).toBe(2);
    expect(logs.filter((l) => l.msg === 'slack dead letters not counted')).toEqual([
      expect.objectContaining({ level: 'warn', reason: 'cannot reach PostgreSQL' }),
    ]);
    fail = false;
    advance(5000);
    expect(await reader.read()).toBe(2);
    expect(logs.at(-1)).toMatchObject({ msg: 'slack dead letters counted again' });
  });

  it('logs nothing while counts work, and a failure after a success', async () => {
    let fail = false;
    const { reader, logs, advance } = depth(() =>
      fail ? Promise.reject(new UpstreamError('cannot reach PostgreSQL')) : Promise.resolve(1),
    );
    expect(await reader.read()).toBe(1);
    advance(5000);
    expect(await reader.read()).toBe(1);
    expect(logs).toEqual([]);
    fail = true;
    advance(5000);
    expect(await reader.read()).toBeNaN();
    expect(logs.map((l) => l.msg)).toEqual(['slack dead letters not counted']);
  });

  it('leaves no timer behind once a count has answered', async () => {
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const { reader } = depth(() => Promise.resolve(4), 5000);
    const before = timers();
    expect(await reader.read()).toBe(4);
    expect(timers()).toBe(before);
  });

  it('a count that never answers: NaN after the timeout, and no second count while it hangs', async () => {
    const { reader, calls } = depth(() => new Promise<number>(() => undefined));
    expect(await reader.read()).toBeNaN();
    expect(await reader.read()).toBeNaN();
    expect(calls.n).toBe(1);
  });
});
