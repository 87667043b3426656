import { Counter, Histogram, type Registry } from 'prom-client';
import { PUBLISH_OUTCOMES, type PublishOutcome } from '../eventing/publisher';
import { LATENCY_BUCKETS_SECONDS, METRIC_PREFIX } from '../metrics';
import { SLACK_KINDS, SLACK_OUTCOMES, type SlackKind, type SlackOutcome } from './outcomes';

export interface SlackMetrics {
  observeSlack: (kind: SlackKind, outcome: SlackOutcome) => void;
  /** One publish of a Slack request to K_SINK: from the POST to the sink's answer. */
  observePublish: (outcome: PublishOutcome, seconds: number) => void;
}

/**
 * Registers the Slack ingress's metrics on `registry`. Known label sets start at 0: a fresh pod
 * shows them, rather than "no data".
 */
export function createSlackMetrics(registry: Registry): SlackMetrics {
  const registers = [registry];
  const slackRequests = new Counter({
    name: `${METRIC_PREFIX}slack_requests_total`,
    help: 'Requests from Slack, by kind (commands, events, interactions) and outcome.',
    labelNames: ['kind', 'outcome'] as const,
    registers,
  });
  for (const kind of SLACK_KINDS) {
    for (const outcome of SLACK_OUTCOMES) slackRequests.inc({ kind, outcome }, 0);
  }
  const publishDuration = new Histogram({
    name: `${METRIC_PREFIX}slack_publish_duration_seconds`,
    help: 'Time from the POST of a Slack request to K_SINK to its answer, by outcome (ok, failed).',
    labelNames: ['outcome'] as const,
    buckets: LATENCY_BUCKETS_SECONDS,
    registers,
  });
  for (const outcome of PUBLISH_OUTCOMES) publishDuration.zero({ outcome });
  return {
    observeSlack: (kind, outcome) => {
      slackRequests.inc({ kind, outcome });
    },
    observePublish: (outcome, seconds) => {
      publishDuration.observe({ outcome }, seconds);
    },
  };
}
