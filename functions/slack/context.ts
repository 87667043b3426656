import type { ServerResponse as Response } from 'node:http';
import type { EventToPublish, Publisher } from '../../lib/eventing/publisher';
import type { RouteRequest as Request } from '../../lib/http/router';
import { sendJson, sendText } from '../../lib/http/respond';
import type { Lifecycle } from '../../lib/lifecycle';
import type { Logger } from '../../lib/logger';
import type { SlackHandlers } from '../../lib/slack/handlers';
import type { SlackKind, SlackOutcome } from '../../lib/slack/outcomes';
import type { SeenIds } from '../../lib/slack/recent-ids';
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
  /** How long a slash command may run before the answer says so (Slack waits 3 s). */
  commandTimeoutMs: number;
  /** Work after the ack is tracked here, so that shutdown waits for it. */
  lifecycle: Lifecycle;
  logger: Logger;
  count: (kind: SlackKind, outcome: SlackOutcome) => void;
}

/**
 * One request kind's handler, called once the request is verified and its body parsed; `raw` is
 * the verified body as Slack sent it.
 */
export type SlackKindHandler = (
  body: Fields,
  res: Response,
  deps: SlackDependencies,
  raw: Buffer,
) => void | Promise<void>;

export type Fields = Record<string, unknown>;

export const text = (value: unknown): string => (typeof value === 'string' ? value : '');

export const header = (req: Request, name: string): string | undefined => {
  const value = req.headers[name];
  return typeof value === 'string' ? value : undefined;
};

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
 * Runs handlers after the acknowledgement, each tracked by the lifecycle so that shutdown waits
 * for it; a failing handler is reported, never thrown.
 */
export function dispatchLater<T>(
  deps: SlackDependencies,
  handlers: readonly ((input: T) => void | Promise<void>)[],
  input: T,
  fail: () => void,
): void {
  for (const handler of handlers) {
    void deps.lifecycle.track(
      Promise.resolve()
        .then(() => handler(input))
        .catch(fail),
    );
  }
}
