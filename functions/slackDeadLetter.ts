import { eventEndpoints, type EventFunctionDependencies } from '../lib/eventing/receive';
import type { Route } from '../lib/http/router';
import type { DeadLetters } from '../lib/slack/dead-letters';

export const SLACK_DEAD_LETTER = 'slackDeadLetter';

/**
 * The `slackDeadLetter` function, the worker Trigger's dead-letter sink: each event Knative gave
 * up on is recorded dead with Knative's error attributes, logged and counted (DeadLetters). As a
 * route behind the image's entry (FUNCTION_TARGET=slackDeadLetter) and, with the probes, under --target.
 */
export function slackDeadLetter(
  deadLetters: DeadLetters,
  deps: EventFunctionDependencies,
): { route: Route } {
  return eventEndpoints(SLACK_DEAD_LETTER, (event) => deadLetters.handle(event), deps);
}
