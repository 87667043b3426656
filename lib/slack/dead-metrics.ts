import { Counter, Gauge, type Registry } from 'prom-client';
import { METRIC_PREFIX } from '../metrics';

/** Why dead rows were removed: past SLACK_DEAD_RETENTION_MS, or beyond SLACK_DEAD_MAX_ROWS. */
export const DEAD_REMOVAL_REASONS = ['expired', 'over_cap'] as const;
export type DeadRemovalReason = (typeof DEAD_REMOVAL_REASONS)[number];

export interface DeadLetterMetrics {
  observeRemoved(reason: DeadRemovalReason, count: number): void;
}

/**
 * Registers the dead-letter function's own metrics: the dead events in PostgreSQL as a gauge read
 * at scrape time (`depth`, NaN when unknown), and the dead rows removed by reason, from 0.
 */
export function createDeadLetterMetrics(
  registry: Registry,
  depth: () => Promise<number>,
): DeadLetterMetrics {
  const registers = [registry];
  new Gauge({
    name: `${METRIC_PREFIX}slack_dead_events`,
    help: 'Slack events Knative gave up on and not replayed yet (slack_work), NaN when unknown.',
    registers,
    async collect() {
      this.set(await depth());
    },
  });
  const removed = new Counter({
    name: `${METRIC_PREFIX}slack_dead_removed_total`,
    help: 'Dead Slack events removed, oldest first: past their retention, or beyond the row cap.',
    labelNames: ['reason'] as const,
    registers,
  });
  for (const reason of DEAD_REMOVAL_REASONS) removed.inc({ reason }, 0);
  return {
    observeRemoved(reason, count) {
      // Stryker disable next-line EqualityOperator: adding 0 to a counter changes nothing
      if (count > 0) removed.inc({ reason }, count);
    },
  };
}
