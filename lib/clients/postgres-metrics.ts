import { Gauge, Histogram, type Registry } from 'prom-client';
import { METRIC_PREFIX } from '../metrics';

/** Queries take a millisecond to statement_timeout; the top buckets show the cut ones. */
const QUERY_BUCKETS_SECONDS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** Operation names are label values: a bounded set chosen in code, never SQL text. */
const OPERATION = /^[a-z][a-z0-9_]{0,47}$/;

export const POOL_STATES = ['total', 'idle', 'waiting'] as const;
export type PoolState = (typeof POOL_STATES)[number];
export const QUERY_OUTCOMES = ['ok', 'error'] as const;
export type QueryOutcome = (typeof QUERY_OUTCOMES)[number];

export interface PostgresMetrics {
  observeQuery(operation: string, outcome: QueryOutcome, seconds: number): void;
}

/** Throws unless `operation` is a name fit for a label (the programmer's mistake, not the user's). */
export function checkOperation(operation: string): void {
  if (!OPERATION.test(operation)) {
    throw new Error(`an operation name must match ${String(OPERATION)}: a fixed name, not SQL`);
  }
}

/** Registers the pool gauges and the query histogram on `registry`; only a database client does. */
export function createPostgresMetrics(
  registry: Registry,
  poolCounts: () => Record<PoolState, number>,
): PostgresMetrics {
  const registers = [registry];
  const connections = new Gauge({
    name: `${METRIC_PREFIX}db_pool_connections`,
    help: 'PostgreSQL pool: connections open (total), idle in the pool, and callers waiting for one.',
    labelNames: ['state'] as const,
    registers,
    collect() {
      const counts = poolCounts();
      for (const state of POOL_STATES) connections.set({ state }, counts[state]);
    },
  });
  const duration = new Histogram({
    name: `${METRIC_PREFIX}db_query_duration_seconds`,
    help: 'Time PostgreSQL queries took, waiting for a connection included, by operation and outcome.',
    labelNames: ['operation', 'outcome'] as const,
    buckets: QUERY_BUCKETS_SECONDS,
    registers,
  });
  return {
    observeQuery(operation, outcome, seconds) {
      duration.observe({ operation, outcome }, seconds);
    },
  };
}
