import type { CloudEventFunction } from '@google-cloud/functions-framework';
import {
  eventFunction,
  eventRoute,
  refuseInvalidEvent,
  type EventFunctionDependencies,
} from '../lib/eventing/receive';
import type { Route } from '../lib/http/router';
import type { DeadLetters } from '../lib/slack/worker';

export const SLACK_DEAD_LETTER = 'slackDeadLetter';

/**
 * The `slackDeadLetter` function, the worker Trigger's dead-letter sink: each event Knative gave
 * up on is recorded dead with Knative's error attributes, logged and counted (DeadLetters). As a
 * route behind the image's entry (FUNCTION_TARGET=slackDeadLetter), and as a cloudEvent function.
 */
export function slackDeadLetter(
  deadLetters: DeadLetters,
  deps: EventFunctionDependencies,
): { route: Route; cloudEvent: CloudEventFunction } {
  const take = (event: Parameters<DeadLetters['handle']>[0]) => deadLetters.handle(event);
  const invalid = refuseInvalidEvent(deps);
  return {
    route: eventRoute(SLACK_DEAD_LETTER, '/', deps.maxBodyBytes, take, invalid),
    cloudEvent: eventFunction(take, invalid),
  };
}
