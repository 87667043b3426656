import { errorDetails } from '../errors';
import type { Lifecycle } from '../lifecycle';
import { SlackRateLimitedError } from './client';
import { handlerContext, type ContextDependencies, type Delivery } from './context';
import type { Handler } from './handlers';

/** How one delivery's handlers ended. */
export type RunResult =
  | { outcome: 'done' }
  /** Past the deadline: the handlers still running go on in the background. */
  | { outcome: 'timeout' }
  | { outcome: 'failed'; error: unknown }
  /** Slack answered 429 inside a handler: try again after retryAfterSeconds (whole, ≥ 1). */
  | { outcome: 'rate_limited'; error: SlackRateLimitedError; retryAfterSeconds: number };

export interface RunOptions extends ContextDependencies {
  /** When the handlers' signal fires and the run counts as timed out. */
  timeoutMs: number;
  /** Handlers still running after the deadline are tracked here, so that the drain waits. */
  lifecycle: Lifecycle;
}

/** Slack asks for whole seconds; anything odd is read as one, anything huge as an hour. */
const MAX_RETRY_AFTER_SECONDS = 3600;
const wholeSeconds = (seconds: number): number =>
  Number.isFinite(seconds) ? Math.min(Math.max(Math.ceil(seconds), 1), MAX_RETRY_AFTER_SECONDS) : 1;

/** What the failures of one run amount to: rate limited only when every failure is a 429. */
function judge(failures: readonly unknown[]): RunResult {
  if (failures.length === 0) return { outcome: 'done' };
  const other = failures.findIndex((error) => !(error instanceof SlackRateLimitedError));
  if (other !== -1) return { outcome: 'failed', error: failures[other] };
  const limited = failures as SlackRateLimitedError[];
  const longest = limited.reduce((a, b) => (b.retryAfterSeconds > a.retryAfterSeconds ? b : a));
  return {
    outcome: 'rate_limited',
    error: longest,
    retryAfterSeconds: wholeSeconds(longest.retryAfterSeconds),
  };
}

/**
 * Runs every handler of one delivery with one context and waits for all of them (one failing does
 * not leave the others running unseen), at most timeoutMs: then the context's signal fires and the
 * run ends as `timeout`, the handlers still running tracked by the lifecycle.
 */
export async function runHandlers(
  handlers: readonly Handler[],
  delivery: Omit<Delivery, 'signal'>,
  options: RunOptions,
): Promise<RunResult> {
  const controller = new AbortController();
  const context = handlerContext({ ...delivery, signal: controller.signal }, options);
  const all = Promise.allSettled(
    handlers.map((handler) => Promise.resolve().then(() => handler(delivery.payload, context))),
  );
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => {
      controller.abort(new DOMException('the handler timeout passed', 'TimeoutError'));
      resolve('timeout');
    }, options.timeoutMs);
  });
  try {
    const settled = await Promise.race([all, timeout]);
    if (settled === 'timeout') {
      // Handlers cannot be stopped: those still running are waited for by the drain.
      void options.lifecycle.track(all);
      return { outcome: 'timeout' };
    }
    return judge(
      settled.flatMap((result): unknown[] => (result.status === 'rejected' ? [result.reason] : [])),
    );
  } finally {
    clearTimeout(timer);
  }
}

/** Longest `last_error` kept in the work table. */
const MAX_LAST_ERROR_LENGTH = 512;

/** Why a run failed, in a line for the work table: the error's name and message, bounded. */
export function failureReason(result: RunResult): string {
  if (result.outcome === 'done') return '';
  if (result.outcome === 'timeout') return 'timeout';
  const { name, message } = errorDetails(result.error);
  return (message === '' ? name : `${name}: ${message}`).slice(0, MAX_LAST_ERROR_LENGTH);
}

/** The fields of a failure's log line: the event, the attempt and what went wrong. */
export function failureFields(
  delivery: Pick<Delivery, 'eventId' | 'type' | 'attempt'>,
  result: Exclude<RunResult, { outcome: 'done' }>,
): Record<string, unknown> {
  const event = { id: delivery.eventId, type: delivery.type, attempt: delivery.attempt };
  if (result.outcome === 'timeout') return { ...event, error: 'timeout' };
  if (result.outcome === 'rate_limited') {
    return {
      ...event,
      method: result.error.method,
      retryAfterSeconds: result.retryAfterSeconds,
    };
  }
  return { ...event, error: errorDetails(result.error) };
}
