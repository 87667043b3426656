import type { ServerResponse as Response } from 'node:http';
import type { Queryable } from '../../lib/clients/postgres';
import type { EventToPublish, Publisher } from '../../lib/eventing/publisher';
import type { RouteRequest as Request } from '../../lib/http/router';
import { sendJson, sendText } from '../../lib/http/respond';
import type { Lifecycle } from '../../lib/lifecycle';
import { errorDetails } from '../../lib/errors';
import type { Logger } from '../../lib/logger';
import type { ReadinessReport } from '../../lib/readiness';
import type { SlackClient } from '../../lib/slack/client';
import {
  handlerContext,
  retryNumOf,
  retryReasonOf,
  type Delivery,
  type HandlerContext,
} from '../../lib/slack/context';
import type { Handler, SlackHandlers } from '../../lib/slack/handlers';
import type { SlackKind, SlackOutcome } from '../../lib/slack/outcomes';
import type { SeenIds } from '../../lib/slack/recent-ids';
import type { ResponseUrls } from '../../lib/slack/respond';
import { failureFields, runHandlers } from '../../lib/slack/run';
import type { SlackVerifier } from '../../lib/slack/verify';

/** What the `slack` function is given. */
export interface SlackDependencies {
  verifier: SlackVerifier;
  handlers: SlackHandlers;
  /**
   * With K_SINK: where verified events and interactions go, handled by the worker rather than in
   * this process. Undefined: handled here, after the ack.
   */
  publisher: Publisher | undefined;
  /** Event ids already handled: a delivery seen before is acknowledged, not dispatched again. */
  seenEvents: SeenIds;
  /** Most handlers running after their ack at once; beyond it a request is answered 503. */
  maxPendingWork: number;
  /** How long an answer in place may run (a command's, a modal's, options; Slack waits 3 s). */
  commandTimeoutMs: number;
  /** Work after the ack is tracked here, so that shutdown waits for it. */
  lifecycle: Lifecycle;
  /** When the signal of handlers run after the ack fires (SLACK_HANDLER_TIMEOUT_MS). */
  handlerTimeoutMs: number;
  /** Handlers' Slack Web API client. */
  slack: SlackClient;
  /** Handlers' PostgreSQL, when this process has a database. */
  postgres: Queryable | undefined;
  /** Where handlers' respond() posts. */
  responseUrls: Pick<ResponseUrls, 'respond'>;
  /** This process's readiness, for handlers that report it. */
  readiness: () => Promise<ReadinessReport>;
  logger: Logger;
  count: (kind: SlackKind, outcome: SlackOutcome) => void;
}

/**
 * One request kind's handler, called once the request is verified and its body parsed; `req` holds
 * the verified body as Slack sent it (`rawBody`) and Slack's retry headers.
 */
export type SlackKindHandler = (
  body: Fields,
  res: Response,
  deps: SlackDependencies,
  req: Request,
) => void | Promise<void>;

export type Fields = Record<string, unknown>;

export const text = (value: unknown): string => (typeof value === 'string' ? value : '');

export const header = (req: Request, name: string): string | undefined => {
  const value = req.headers[name];
  return typeof value === 'string' ? value : undefined;
};

/** When Slack sent the request: its verified `X-Slack-Request-Timestamp`, in epoch ms. */
export const issuedAtOf = (req: Request): number | undefined => {
  const seconds = Number(header(req, 'x-slack-request-timestamp'));
  return Number.isSafeInteger(seconds) ? seconds * 1000 : undefined;
};

/** Slack's retry number and reason, from its headers (well-formed only). */
export const slackRetryOf = (req: Request): Pick<Delivery, 'retryNum' | 'retryReason'> => ({
  retryNum: retryNumOf(header(req, 'x-slack-retry-num')),
  retryReason: retryReasonOf(header(req, 'x-slack-retry-reason')),
});

/**
 * Refuses a verified request whose body is not what its kind takes: one warning naming the kind
 * (never the body), counted `invalid_payload`, answered `status` with `error`.
 */
export function refuseInvalid(
  deps: SlackDependencies,
  kind: SlackKind,
  res: Response,
  status = 400,
  error = 'invalid payload',
): void {
  deps.count(kind, 'invalid_payload');
  deps.logger.warn('slack request refused', { kind, outcome: 'invalid_payload', status });
  sendJson(res, status, { error });
}

/** Slack's acknowledgement: an empty 200. */
export const ack = (res: Response): void => {
  sendText(res, 200, 'text/plain; charset=utf-8', '');
};

/**
 * Publishes a verified request. True once the sink took it (answer nothing yet: the caller acks);
 * otherwise Slack gets 503, counted `publish_failed` (the publisher has logged why), and Slack's
 * retry of an event is published again.
 */
export async function publishOrRefuse(
  deps: SlackDependencies,
  kind: SlackKind,
  res: Response,
  publisher: Publisher,
  event: EventToPublish,
): Promise<boolean> {
  const result = await publisher.publish(event);
  if (result.ok) return true;
  deps.count(kind, 'publish_failed');
  sendJson(res, 503, { error: 'temporarily unavailable' });
  return false;
}

/**
 * Refuses a request whose handlers would run after the ack when as many as maxPendingWork are
 * running: answers 503, counted `overloaded` (Slack delivers an event again later; a person sees
 * the interaction fail and may retry); nothing is queued. True when it refused.
 */
export function refuseWhenBusy(
  deps: SlackDependencies,
  kind: SlackKind,
  res: Response,
  handlers: readonly unknown[],
): boolean {
  if (handlers.length === 0 || deps.lifecycle.inFlight().work < deps.maxPendingWork) return false;
  deps.count(kind, 'overloaded');
  deps.logger.warn('slack request refused', { kind, outcome: 'overloaded' });
  sendJson(res, 503, { error: 'busy' });
  return true;
}

/**
 * Runs a delivery's handlers after the acknowledgement with their context (attempt 1, the signal
 * firing at handlerTimeoutMs), tracked by the lifecycle so that shutdown waits for them; a failure
 * is logged with the error's name, message and stack and counted (`handler_error`, or
 * `rate_limited` when Slack answered 429), never thrown.
 */
export function dispatchLater(
  deps: SlackDependencies,
  handlers: readonly Handler[],
  delivery: Omit<Delivery, 'signal' | 'attempt'>,
): void {
  const attempted = { ...delivery, attempt: 1 };
  const run = runHandlers(handlers, attempted, {
    slack: deps.slack,
    postgres: deps.postgres,
    responseUrls: deps.responseUrls,
    readiness: deps.readiness,
    logger: deps.logger,
    lifecycle: deps.lifecycle,
    timeoutMs: deps.handlerTimeoutMs,
  }).then((result) => {
    if (result.outcome === 'done') return;
    const fields = failureFields(attempted, result);
    if (result.outcome === 'rate_limited') {
      // Nothing retries in process: Slack does not redeliver an acknowledged event.
      deps.count(delivery.kind, 'rate_limited');
      deps.logger.warn('slack handler rate limited', fields);
    } else {
      deps.count(delivery.kind, 'handler_error');
      deps.logger.error('slack handler failed', fields);
    }
  });
  void deps.lifecycle.track(run);
}

/** How an answer in place ended. */
export type Answered<A> =
  { ok: true; value: A | undefined } | { ok: false; outcome: 'timeout' | 'failed' };

/**
 * Runs an answer in place (a command's, a modal's, an external select's options) before Slack's
 * acknowledgement, with a context of its own (attempt 1, its signal firing at commandTimeoutMs),
 * at most commandTimeoutMs. A failure is logged (`slack answer failed`, the error's name, message
 * and stack) and never thrown; an answer still running at the deadline is tracked by the
 * lifecycle, so that the drain waits for it.
 */
export async function answerInPlace<A>(
  deps: SlackDependencies,
  answer: (context: HandlerContext) => Promise<A | undefined>,
  delivery: Omit<Delivery, 'signal' | 'attempt'>,
): Promise<Answered<A>> {
  const controller = new AbortController();
  const context = handlerContext({ ...delivery, attempt: 1, signal: controller.signal }, deps);
  const fields = { kind: delivery.kind, type: delivery.type, id: delivery.eventId };
  const running = Promise.resolve()
    .then(() => answer(context))
    .then(
      (value): Answered<A> => ({ ok: true, value }),
      (error: unknown): Answered<A> => {
        deps.logger.error('slack answer failed', { ...fields, error: errorDetails(error) });
        return { ok: false, outcome: 'failed' };
      },
    );
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<Answered<A>>((resolve) => {
    timer = setTimeout(() => {
      controller.abort(new DOMException('the answer timeout passed', 'TimeoutError'));
      deps.logger.warn('slack answer too slow', { ...fields, timeoutMs: deps.commandTimeoutMs });
      resolve({ ok: false, outcome: 'timeout' });
    }, deps.commandTimeoutMs);
  });
  try {
    const result = await Promise.race([running, late]);
    if (!result.ok && result.outcome === 'timeout') void deps.lifecycle.track(running);
    return result;
  } finally {
    clearTimeout(timer);
  }
}
