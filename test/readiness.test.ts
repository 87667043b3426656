import { ReadinessChecker, type ReadinessCheckerOptions } from '../lib/readiness';
import type { HealthCheckClient } from '../lib/health';
import { FakeClient } from '../testing/fakes';

function makeChecker(overrides: Partial<ReadinessCheckerOptions> = {}) {
  const clock = { now: 0 };
  const vault = new FakeClient();
  const ory = new FakeClient();
  const checker = new ReadinessChecker({
    components: { vault, ory },
    ttlMs: 1000,
    timeoutMs: 100,
    now: () => clock.now,
    ...overrides,
  });
  return { checker, vault, ory, clock };
}

/** A promise whose settling the test can see without awaiting it. */
function settling<T>(promise: Promise<T>): { promise: Promise<T>; settled: boolean } {
  const state = { promise, settled: false };
  promise.then(
    () => (state.settled = true),
    () => (state.settled = true),
  );
  return state;
}

/**
 * Moves the (fake) timers by ms and takes the answer, which must be there by then: a checker that
 * lost its timeout fails here at once rather than hanging the suite.
 */
async function checkedWithin<T>(answer: { promise: Promise<T>; settled: boolean }, ms: number) {
  await jest.advanceTimersByTimeAsync(ms);
  if (!answer.settled) throw new Error(`check() had not answered ${ms} ms later`);
  return answer.promise;
}

describe('ReadinessChecker', () => {
  // Only the timeout's timer is faked: the checker's clock is `now`, and setImmediate stays real.
  beforeEach(() => {
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
  });
  afterEach(() => {
    jest.useRealTimers();
  });

  it('is ready when every component is ok', async () => {
    const { checker } = makeChecker();
    const report = await checker.check();
    expect(report.ready).toBe(true);
    expect(Object.keys(report.components)).toEqual(['vault', 'ory']);
  });

  it('is not ready when any component is unavailable, and says which', async () => {
    const { checker, ory } = makeChecker();
    ory.status = 'unavailable';
    ory.error = 'status 503';
    const report = await checker.check();
    expect(report.ready).toBe(false);
    expect(report.components.vault?.status).toBe('ok');
    expect(report.components.ory).toMatchObject({ status: 'unavailable', error: 'status 503' });
  });

  it('shares one in-flight check between concurrent callers', async () => {
    const { checker, vault, ory } = makeChecker();
    vault.held = true;
    ory.held = true;
    const reports = Array.from({ length: 100 }, () => checker.check());
    await Promise.resolve();
    vault.release();
    ory.release();
    await new Promise((resolve) => setImmediate(resolve));
    vault.release();
    ory.release();
    const settled = await Promise.all(reports);
    expect(settled.every((r) => r.ready)).toBe(true);
    expect(vault.calls).toBe(1);
    expect(ory.calls).toBe(1);
  });

  it('reuses a result for the TTL and checks again after it', async () => {
    const { checker, vault, clock } = makeChecker();
    await checker.check();
    for (let t = 0; t < 1000; t += 100) {
      clock.now = t;
      await checker.check();
    }
    expect(vault.calls).toBe(1);
    clock.now = 1000;
    await checker.check();
    expect(vault.calls).toBe(2);
  });

  it('checks every time with a TTL of 0, still one at a time', async () => {
    const { checker, vault } = makeChecker({ ttlMs: 0 });
    await checker.check();
    await checker.check();
    expect(vault.calls).toBe(2);
    vault.held = true;
    const both = Promise.all([checker.check(), checker.check()]);
    await Promise.resolve();
    await new Promise((resolve) => setImmediate(resolve));
    vault.release();
    await both;
    expect(vault.calls).toBe(3);
  });

  it('shows a change of state once the TTL has passed', async () => {
    const { checker, vault, clock } = makeChecker();
    expect((await checker.check()).ready).toBe(true);
    vault.status = 'unavailable';
    vault.error = 'sealed';
    clock.now = 999;
    expect((await checker.check()).ready).toBe(true);
    clock.now = 1000;
    const report = await checker.check();
    expect(report.ready).toBe(false);
    expect(report.components.vault?.error).toBe('sealed');
  });

  it('answers when the timeout fires while a check hangs, not before, calling it a timeout', async () => {
    const { checker, vault } = makeChecker({ timeoutMs: 50 });
    vault.held = true;
    const answer = settling(checker.check());
    await jest.advanceTimersByTimeAsync(49);
    expect(answer.settled).toBe(false);
    const report = await checkedWithin(answer, 1);
    expect(report.ready).toBe(false);
    expect(report.components.vault).toMatchObject({
      status: 'unavailable',
      error: 'timeout after 50 ms',
      latencyMs: 50,
    });
    expect(report.components.ory?.status).toBe('ok');
  });

  it('joins a hung check until the timeout, then starts a new one', async () => {
    const { checker, vault, clock } = makeChecker({ timeoutMs: 20 });
    vault.held = true;
    await checkedWithin(settling(checker.check()), 20);
    clock.now = 20;
    await checkedWithin(settling(checker.check()), 20);
    expect(vault.calls).toBe(1);
    clock.now = 21;
    vault.held = false;
    const report = await checker.check();
    expect(vault.calls).toBe(2);
    expect(report.ready).toBe(true);
    // The abandoned check finishing late does not overwrite the newer result.
    vault.status = 'unavailable';
    vault.release();
    await new Promise((resolve) => setImmediate(resolve));
    clock.now = 22;
    expect((await checker.check()).components.vault?.status).toBe('ok');
  });

  it('treats a client that throws or rejects as unavailable', async () => {
    const throwing: HealthCheckClient = {
      healthCheck: () => {
        throw new Error('secret-detail');
      },
    };
    const rejecting: HealthCheckClient = {
      healthCheck: () => Promise.reject(new Error('secret-detail')),
    };
    const checker = new ReadinessChecker({
      components: { throwing, rejecting },
      ttlMs: 1000,
      timeoutMs: 100,
    });
    const report = await checker.check();
    expect(report.ready).toBe(false);
    expect(report.components.throwing?.error).toBe('health check failed');
    expect(report.components.rejecting?.error).toBe('health check failed');
    expect(JSON.stringify(report)).not.toContain('secret-detail');
  });

  it('tells the listener each finished check with the previous result', async () => {
    const seen: [string, string, string | undefined][] = [];
    const { checker, vault, clock } = makeChecker({
      onCheck: (name, health, previous) => seen.push([name, health.status, previous?.status]),
    });
    await checker.check();
    await checker.check(); // cached: no new check, no call
    vault.status = 'unavailable';
    clock.now = 1000;
    await checker.check();
    expect(seen).toEqual([
      ['vault', 'ok', undefined],
      ['ory', 'ok', undefined],
      ['vault', 'unavailable', 'ok'],
      ['ory', 'ok', 'ok'],
    ]);
  });

  it('peeks at a fresh report at once, and at nothing once a result is stale or missing', async () => {
    const { checker, clock } = makeChecker();
    expect(checker.peek()).toBeUndefined();
    const report = await checker.check();
    expect(checker.peek()).toBe(report);
    expect(await checker.check()).toBe(report);
    clock.now = 1000;
    expect(checker.peek()).toBeUndefined();
    const next = await checker.check();
    expect(next).not.toBe(report);
    expect(checker.peek()).toBe(next);
  });
});
