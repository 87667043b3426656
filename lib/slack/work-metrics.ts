import { Counter, Histogram, type Registry } from 'prom-client';
import { METRIC_PREFIX } from '../metrics';
import {
  HANDLER_OUTCOMES,
  WORK_KINDS,
  WORK_OUTCOMES,
  type HandlerOutcome,
  type WorkKind,
  type WorkOutcome,
} from './outcomes';

/** Handlers run from milliseconds to SLACK_HANDLER_TIMEOUT_MS (at most 60 s). */
const HANDLER_BUCKETS_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export interface WorkMetrics {
  observeWork(kind: WorkKind, outcome: WorkOutcome): void;
  observeHandlers(kind: WorkKind, outcome: HandlerOutcome, seconds: number): void;
}

/**
 * Registers the Slack worker's metrics on `registry`; only the worker and dead-letter functions
 * do. Every label set starts at 0, so that a fresh pod's dashboards and alerts have data.
 */
export function createWorkMetrics(registry: Registry): WorkMetrics {
  const registers = [registry];
  const work = new Counter({
    name: `${METRIC_PREFIX}slack_work_total`,
    help: 'Slack events taken from Knative Eventing, by kind and outcome.',
    labelNames: ['kind', 'outcome'] as const,
    registers,
  });
  const handlers = new Histogram({
    name: `${METRIC_PREFIX}slack_handler_duration_seconds`,
    help: 'Time the handlers registered for one Slack event took, by kind and outcome.',
    labelNames: ['kind', 'outcome'] as const,
    buckets: HANDLER_BUCKETS_SECONDS,
    registers,
  });
  for (const kind of WORK_KINDS) {
    for (const outcome of WORK_OUTCOMES) work.inc({ kind, outcome }, 0);
    if (kind === 'unknown') continue;
    for (const outcome of HANDLER_OUTCOMES) handlers.zero({ kind, outcome });
  }
  return {
    observeWork(kind, outcome) {
      work.inc({ kind, outcome });
    },
    observeHandlers(kind, outcome, seconds) {
      handlers.observe({ kind, outcome }, seconds);
    },
  };
}
