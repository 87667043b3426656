import { eventEndpoints, type EventFunctionDependencies } from '../lib/eventing/receive';
import type { Route } from '../lib/http/router';
import type { SlackWorker } from '../lib/slack/worker';

export const SLACK_WORKER = 'slackWorker';

/**
 * The `slackWorker` function: Slack events and interactions the ingress published, delivered by
 * a Knative Trigger to POST /, each run once across every worker (SlackWorker). As a route behind
 * the image's entry (FUNCTION_TARGET=slackWorker) and, with the probes, under --target.
 */
export function slackWorker(
  worker: SlackWorker,
  deps: EventFunctionDependencies,
): { route: Route } {
  return eventEndpoints(SLACK_WORKER, (event) => worker.handle(event), deps);
}
