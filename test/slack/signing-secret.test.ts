import { UpstreamError } from '../../lib/errors';
import { SigningSecret } from '../../lib/slack/signing-secret';

function source(values: string[]) {
  const state = { reads: 0, fail: false };
  const load = () => {
    state.reads += 1;
    if (state.fail) return Promise.reject(new UpstreamError('sealed'));
    return Promise.resolve(values[Math.min(state.reads - 1, values.length - 1)]!);
  };
  return { state, load };
}

describe('SigningSecret', () => {
  it('reads once per TTL and shares one read between callers', async () => {
    const clock = { now: 0 };
    const { state, load } = source(['first']);
    const secret = new SigningSecret({ load, ttlMs: 1000, staleMs: 0, now: () => clock.now });
    await Promise.all([secret.current(), secret.current(), secret.current()]);
    expect(state.reads).toBe(1);
    clock.now = 999;
    await secret.current();
    expect(state.reads).toBe(1);
    clock.now = 1000;
    await secret.current();
    expect(state.reads).toBe(2);
  });

  it('picks up a rotated secret after a mismatch, at most once per TTL', async () => {
    const clock = { now: 0 };
    const { state, load } = source(['old', 'new', 'newer']);
    const secret = new SigningSecret({ load, ttlMs: 1000, staleMs: 0, now: () => clock.now });
    expect(await secret.current()).toBe('old');
    expect(await secret.refreshAfterMismatch()).toBe('new');
    expect(await secret.current()).toBe('new');
    clock.now = 500;
    expect(await secret.refreshAfterMismatch()).toBeUndefined();
    expect(state.reads).toBe(2);
    clock.now = 1001;
    expect(await secret.refreshAfterMismatch()).toBe('newer');
  });

  it('says undefined when a forced read finds the same secret', async () => {
    const { load } = source(['same']);
    const secret = new SigningSecret({ load, ttlMs: 1000, staleMs: 0, now: () => 0 });
    await secret.current();
    expect(await secret.refreshAfterMismatch()).toBeUndefined();
  });

  it('reports readiness with the reason, and recovers', async () => {
    const clock = { now: 0 };
    const { state, load } = source(['s3cret']);
    state.fail = true;
    const secret = new SigningSecret({ load, ttlMs: 1000, staleMs: 0, now: () => clock.now });
    expect(await secret.healthCheck()).toMatchObject({
      status: 'unavailable',
      error: 'cannot read the signing secret: sealed',
    });
    state.fail = false;
    clock.now = 1000; // past the first backoff
    expect(await secret.healthCheck()).toMatchObject({ status: 'ok' });
    expect(JSON.stringify(await secret.healthCheck())).not.toContain('s3cret');
  });

  it('does not repeat messages of errors it does not know', async () => {
    const secret = new SigningSecret({
      load: () => Promise.reject(new Error('token=hvs.leak')),
      ttlMs: 1000,
      staleMs: 0,
    });
    expect((await secret.healthCheck()).error).toBe(
      'cannot read the signing secret: request failed',
    );
  });

  it('remembers a failure: no new read until the backoff, doubling, has passed', async () => {
    const clock = { now: 0 };
    const { state, load } = source(['s']);
    state.fail = true;
    const secret = new SigningSecret({ load, ttlMs: 1000, staleMs: 0, now: () => clock.now });
    for (let i = 0; i < 50; i += 1) await expect(secret.current()).rejects.toThrow('sealed');
    expect(state.reads).toBe(1);
    clock.now = 999;
    await expect(secret.current()).rejects.toThrow('sealed');
    expect(state.reads).toBe(1);
    clock.now = 1000;
    await expect(secret.current()).rejects.toThrow('sealed');
    expect(state.reads).toBe(2);
    clock.now = 2999; // the second backoff is 2 s
    await expect(secret.current()).rejects.toThrow('sealed');
    await expect(secret.refreshAfterMismatch()).resolves.toBeUndefined();
    expect(state.reads).toBe(2);
    state.fail = false;
    clock.now = 3000;
    expect(await secret.current()).toBe('s');
    expect(state.reads).toBe(3);
  });

  it('keeps using the last secret while reads fail, up to staleMs past its TTL', async () => {
    const clock = { now: 0 };
    const { state, load } = source(['known']);
    const secret = new SigningSecret({ load, ttlMs: 1000, staleMs: 5000, now: () => clock.now });
    expect(await secret.current()).toBe('known');
    state.fail = true;
    clock.now = 1500;
    expect(await secret.current()).toBe('known');
    expect(await secret.healthCheck()).toMatchObject({ status: 'ok' });
    clock.now = 5999;
    expect(await secret.current()).toBe('known');
    clock.now = 6000;
    await expect(secret.current()).rejects.toThrow('sealed');
  });
});
