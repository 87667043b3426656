import type { Request, Response } from '@google-cloud/functions-framework';
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

/** One request kind's handler, called once the request is verified. */
export type SlackKindHandler = (
  req: Request,
  res: Response,
  deps: SlackDependencies,
) => void | Promise<void>;

export type Fields = Record<string, unknown>;

export const text = (value: unknown): string => (typeof value === 'string' ? value : '');

export const header = (req: Request, name: string): string | undefined => {
  const value = req.headers[name];
  return typeof value === 'string' ? value : undefined;
};

/** Slack's acknowledgement: an empty 200. */
export const ack = (res: Response): void => {
  sendText(res, 200, 'text/plain; charset=utf-8', '');
};

/**
 * Whether handlers after the ack must be refused: as many as maxPendingWork are running. The
 * request is answered 503 and counted `overloaded` (Slack delivers an event again later; a person
 * sees the interaction fail and may retry); nothing is queued.
 */
export function overloaded(
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
