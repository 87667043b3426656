import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { InFlightLimit } from '../../lib/http/in-flight';

/** A request and its response as the limit sees them: identities, and the response's 'close'. */
function exchange(headers: Record<string, string> = {}) {
  const req = { headers } as unknown as IncomingMessage;
  const res = new EventEmitter() as unknown as ServerResponse;
  return { req, res, close: () => res.emit('close') };
}

describe('InFlightLimit', () => {
  it('admits up to max, refuses the next with 429 and Retry-After, and frees a place on close', () => {
    const refused: IncomingMessage[] = [];
    const limit = new InFlightLimit(2, (req) => refused.push(req));
    const [a, b, c] = [exchange(), exchange(), exchange()];
    expect(limit.admit(a.req, a.res)).toBeUndefined();
    expect(limit.admit(b.req, b.res)).toBeUndefined();
    expect(limit.admit(c.req, c.res)).toEqual({
      status: 429,
      error: 'too many requests in flight',
      headers: { 'Retry-After': '1' },
    });
    expect(refused).toEqual([c.req]);
    expect(limit.inFlight).toBe(2);
    a.close();
    expect(limit.inFlight).toBe(1);
    expect(limit.admit(c.req, c.res)).toBeUndefined();
  });

  it('keeps a place through the work begun for it, however early the answer closes', async () => {
    const limit = new InFlightLimit(1, () => undefined);
    const a = exchange();
    limit.admit(a.req, a.res);
    let finish!: () => void;
    const work = limit.during(
      a.req,
      () =>
        new Promise<string>((resolve) => {
          finish = () => {
            resolve('done');
          };
        }),
    );
    a.close();
    expect(limit.inFlight).toBe(1);
    const b = exchange();
    expect(limit.admit(b.req, b.res)?.status).toBe(429);
    finish();
    expect(await work).toBe('done');
    expect(limit.inFlight).toBe(0);
    // A second 'close' gives nothing back twice.
    a.close();
    expect(limit.inFlight).toBe(0);
  });

  it('runs nothing for a request whose place was given back before its work began', async () => {
    const limit = new InFlightLimit(1, () => undefined);
    const a = exchange();
    limit.admit(a.req, a.res);
    a.close();
    let ran = false;
    const result = await limit.during(a.req, () => {
      ran = true;
      return Promise.resolve('ran');
    });
    expect([result, ran, limit.inFlight]).toEqual([undefined, false, 0]);
  });

  it('runs a request it never admitted (a function served alone) as it is', async () => {
    const limit = new InFlightLimit(1, () => undefined);
    expect(await limit.during(exchange().req, () => Promise.resolve('ran'))).toBe('ran');
    expect(limit.inFlight).toBe(0);
  });

  it('gives the place back when the work fails', async () => {
    const limit = new InFlightLimit(1, () => undefined);
    const a = exchange();
    limit.admit(a.req, a.res);
    await expect(limit.during(a.req, () => Promise.reject(new Error('boom')))).rejects.toThrow(
      'boom',
    );
    a.close();
    expect(limit.inFlight).toBe(0);
  });

  it('refuses a limit that is not a positive integer', () => {
    for (const max of [0, -1, 1.5, Number.NaN]) {
      expect(() => new InFlightLimit(max, () => undefined)).toThrow('positive integer');
    }
  });
});
