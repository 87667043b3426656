import { Lifecycle } from '../lib/lifecycle';

describe('Lifecycle', () => {
  it('serves until a drain begins', () => {
    const lifecycle = new Lifecycle();
    expect(lifecycle.draining).toBe(false);
    lifecycle.beginDrain();
    expect(lifecycle.draining).toBe(true);
  });

  it('counts requests until each is done, once', () => {
    const lifecycle = new Lifecycle();
    const first = lifecycle.requestStarted();
    const second = lifecycle.requestStarted();
    expect(lifecycle.inFlight()).toEqual({ requests: 2, work: 0 });
    first();
    first();
    expect(lifecycle.inFlight()).toEqual({ requests: 1, work: 0 });
    second();
    expect(lifecycle.inFlight()).toEqual({ requests: 0, work: 0 });
  });

  it('tracks work until it settles, either way, and hands back its outcome', async () => {
    const lifecycle = new Lifecycle();
    let resolve!: (value: string) => void;
    let reject!: (error: Error) => void;
    const ok = lifecycle.track(new Promise<string>((r) => (resolve = r)));
    const failing = lifecycle.track(new Promise<string>((_r, j) => (reject = j)));
    expect(lifecycle.inFlight().work).toBe(2);
    resolve('done');
    reject(new Error('failed'));
    expect(await ok).toBe('done');
    await expect(failing).rejects.toThrow('failed');
    await lifecycle.idle(1000);
    expect(lifecycle.inFlight().work).toBe(0);
  });

  it('is idle at once with nothing in flight, and when the last thing ends', async () => {
    const lifecycle = new Lifecycle();
    expect(await lifecycle.idle(0)).toBe(true);
    const done = lifecycle.requestStarted();
    let release!: () => void;
    void lifecycle.track(new Promise<void>((r) => (release = r)));
    const idle = lifecycle.idle(60_000);
    done();
    release();
    expect(await idle).toBe(true);
  });

  it('gives up waiting after the timeout', async () => {
    jest.useFakeTimers();
    try {
      const lifecycle = new Lifecycle();
      lifecycle.requestStarted();
      const idle = lifecycle.idle(500);
      jest.advanceTimersByTime(500);
      expect(await idle).toBe(false);
    } finally {
      jest.useRealTimers();
    }
  });
});
