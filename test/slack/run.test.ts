import { Lifecycle } from '../../lib/lifecycle';
import { createLogger } from '../../lib/logger';
import { SlackApiError, SlackRateLimitedError } from '../../lib/slack/client';
import type { HandlerContext } from '../../lib/slack/context';
import type { Handler } from '../../lib/slack/handlers';
import {
  failureFields,
  failureReason,
  runHandlers,
  type RunOptions,
  type RunResult,
} from '../../lib/slack/run';

/**
 * runHandlers without a worker: what one delivery's handlers amount to, and what is kept and
 * logged of a failure. Nothing here calls Slack or a database.
 */

const delivery = {
  eventId: 'Ev1',
  kind: 'events' as const,
  type: 'app_mention',
  payload: { type: 'app_mention', text: 'hi' },
  attempt: 3,
};

let lifecycle: Lifecycle;
const options = (timeoutMs = 5000): RunOptions => ({
  slack: { call: () => Promise.reject(new Error('no Slack here')) },
  logger: createLogger('error', () => undefined),
  responseUrls: { respond: () => Promise.reject(new Error('no hooks here')) },
  readiness: () => Promise.reject(new Error('no readiness here')),
  lifecycle,
  timeoutMs,
});
beforeEach(() => {
  lifecycle = new Lifecycle();
});

/** A promise held open until the test says. */
function gate(): { open: () => void; opened: Promise<void> } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { open, opened };
}

/** Resolves after every timer of `ms` set before it has fired. */
const after = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const limited = (seconds: number, method = 'chat.postMessage'): Handler => {
  return () => Promise.reject(new SlackRateLimitedError(method, seconds));
};

describe('runHandlers', () => {
  it('runs every handler with the payload and one shared context: done', async () => {
    const seen: [Record<string, unknown>, HandlerContext][] = [];
    const record: Handler = (payload, context) => {
      seen.push([payload, context]);
    };
    const result = await runHandlers([record, record], delivery, options());
    expect(result).toEqual({ outcome: 'done' });
    expect(seen.map(([payload]) => payload)).toEqual([delivery.payload, delivery.payload]);
    expect(seen[0]![1]).toBe(seen[1]![1]);
    expect(seen[0]![1]).toMatchObject({ eventId: 'Ev1', type: 'app_mention', attempt: 3 });
  });

  it('no handlers: done', async () => {
    expect(await runHandlers([], delivery, options())).toEqual({ outcome: 'done' });
  });

  it('a handler that throws at once fails the run, after its siblings ran', async () => {
    const ran: string[] = [];
    const error = new RangeError('no milk');
    const result = await runHandlers(
      [
        () => {
          ran.push('ok');
        },
        () => {
          throw error;
        },
        async () => {
          await Promise.resolve();
          ran.push('late');
        },
      ],
      delivery,
      options(),
    );
    expect(result).toEqual({ outcome: 'failed', error });
    expect(ran).toEqual(['ok', 'late']);
  });

  it('a failure that is not a 429 wins over the 429s: failed, with that error', async () => {
    const error = new SlackApiError('chat.postMessage', 'channel_not_found');
    const result = await runHandlers(
      [limited(5), () => Promise.reject(error), limited(9)],
      delivery,
      options(),
    );
    expect(result).toEqual({ outcome: 'failed', error });
  });

  it('only 429s: rate limited by the longest wait, in whole seconds', async () => {
    const result = await runHandlers(
      [limited(2, 'reactions.add'), limited(7.2, 'chat.postMessage'), limited(3, 'users.info')],
      delivery,
      options(),
    );
    expect(result).toEqual({
      outcome: 'rate_limited',
      error: new SlackRateLimitedError('chat.postMessage', 7.2),
      retryAfterSeconds: 8,
    });
    if (result.outcome !== 'rate_limited') throw new Error('not rate limited');
    expect(result.error.method).toBe('chat.postMessage');
  });

  it('two 429s with the same wait: the first one is named', async () => {
    const result = await runHandlers(
      [limited(4, 'reactions.add'), limited(4, 'chat.postMessage')],
      delivery,
      options(),
    );
    expect(result).toMatchObject({ outcome: 'rate_limited', retryAfterSeconds: 4 });
    if (result.outcome !== 'rate_limited') throw new Error('not rate limited');
    expect(result.error.method).toBe('reactions.add');
  });

  it.each([
    [0, 1],
    [0.2, 1],
    [-3, 1],
    [1, 1],
    [59.01, 60],
    [3600, 3600],
    [3600.5, 3600],
    [86_400, 3600],
    [Number.POSITIVE_INFINITY, 1],
    [Number.NaN, 1],
  ])('Slack’s wait of %p s is asked for as %p', async (seconds, asked) => {
    const result = await runHandlers([limited(seconds)], delivery, options());
    expect(result).toMatchObject({ outcome: 'rate_limited', retryAfterSeconds: asked });
  });

  it('past timeoutMs: timeout, the signal fired as a TimeoutError, the handler tracked until it ends', async () => {
    const finish = gate();
    let signal: AbortSignal | undefined;
    const result = await runHandlers(
      [
        async (_payload, context) => {
          signal = context.signal;
          await finish.opened;
        },
      ],
      delivery,
      options(20),
    );
    expect(result).toEqual({ outcome: 'timeout' });
    expect(signal!.aborted).toBe(true);
    expect(signal!.reason).toBeInstanceOf(DOMException);
    // A handler that logs why its call was given up reads that the handler timeout passed.
    expect(signal!.reason).toMatchObject({
      name: 'TimeoutError',
      message: expect.stringContaining('handler timeout'),
    });
    expect(lifecycle.inFlight().work).toBe(1);
    finish.open();
    expect(await lifecycle.idle(5000)).toBe(true);
  });

  it('a run that ends in time never fires its signal, even after timeoutMs', async () => {
    let signal: AbortSignal | undefined;
    const result = await runHandlers(
      [
        (_payload, context) => {
          signal = context.signal;
        },
      ],
      delivery,
      options(20),
    );
    expect(result).toEqual({ outcome: 'done' });
    await after(20);
    await after(1);
    expect(signal!.aborted).toBe(false);
    expect(lifecycle.inFlight().work).toBe(0);
  });
});

describe('failureReason', () => {
  const failed = (error: unknown): RunResult => ({ outcome: 'failed', error });

  it('nothing for done; `timeout` for a timeout', () => {
    expect(failureReason({ outcome: 'done' })).toBe('');
    expect(failureReason({ outcome: 'timeout' })).toBe('timeout');
  });

  it('the error’s name and message, or its name alone when it has none', () => {
    expect(failureReason(failed(new TypeError('cannot order')))).toBe('TypeError: cannot order');
    expect(failureReason(failed(new RangeError()))).toBe('RangeError');
    expect(failureReason(failed('thrown text'))).toBe('non-error thrown (string): thrown text');
  });

  it('a rate limit names Slack’s method and wait', () => {
    const error = new SlackRateLimitedError('chat.postMessage', 7);
    expect(failureReason({ outcome: 'rate_limited', error, retryAfterSeconds: 7 })).toBe(
      'SlackRateLimitedError: chat.postMessage rate limited: retry after 7 s',
    );
  });

  it('at most 512 characters', () => {
    const reason = failureReason(failed(new Error('x'.repeat(2000))));
    expect(reason).toBe(`Error: ${'x'.repeat(505)}`);
    expect(reason).toHaveLength(512);
  });
});

describe('failureFields', () => {
  const event = { eventId: 'Ev9', type: 'app_mention', attempt: 2 };

  it('a timeout: the event, its attempt and `timeout`', () => {
    expect(failureFields(event, { outcome: 'timeout' })).toEqual({
      id: 'Ev9',
      type: 'app_mention',
      attempt: 2,
      error: 'timeout',
    });
  });

  it('a rate limit: Slack’s method and the wait asked for, no error', () => {
    const error = new SlackRateLimitedError('reactions.add', 2.5);
    expect(failureFields(event, { outcome: 'rate_limited', error, retryAfterSeconds: 3 })).toEqual({
      id: 'Ev9',
      type: 'app_mention',
      attempt: 2,
      method: 'reactions.add',
      retryAfterSeconds: 3,
    });
  });

  it('a failure: the error’s name, message and stack', () => {
    const fields = failureFields(event, { outcome: 'failed', error: new TypeError('no milk') });
    expect(fields).toEqual({
      id: 'Ev9',
      type: 'app_mention',
      attempt: 2,
      error: {
        name: 'TypeError',
        message: 'no milk',
        stack: expect.arrayContaining([expect.stringContaining('run.test.ts')]),
      },
    });
  });
});
