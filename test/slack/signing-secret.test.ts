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
    const secret = new SigningSecret(load, 1000, () => clock.now);
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
    const secret = new SigningSecret(load, 1000, () => clock.now);
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
    const secret = new SigningSecret(load, 1000, () => 0);
    await secret.current();
    expect(await secret.refreshAfterMismatch()).toBeUndefined();
  });

  it('reports readiness with the reason, and recovers', async () => {
    const clock = { now: 0 };
    const { state, load } = source(['s3cret']);
    state.fail = true;
    const secret = new SigningSecret(load, 1000, () => clock.now);
    expect(await secret.healthCheck()).toMatchObject({
      status: 'unavailable',
      error: 'cannot read the signing secret: sealed',
    });
    state.fail = false;
    expect(await secret.healthCheck()).toMatchObject({ status: 'ok' });
    expect(JSON.stringify(await secret.healthCheck())).not.toContain('s3cret');
  });

  it('does not repeat messages of errors it does not know', async () => {
    const secret = new SigningSecret(() => Promise.reject(new Error('token=hvs.leak')), 1000);
    expect((await secret.healthCheck()).error).toBe(
      'cannot read the signing secret: request failed',
    );
  });
});
