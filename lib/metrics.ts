import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ReadinessReport } from './readiness';
import { COMPONENT_OK, type ComponentHealth } from './health';

export const METRIC_PREFIX = 'coffeebuddy_';
/** Probe and scrape answers take microseconds to milliseconds; Slack allows 3 s. */
export const LATENCY_BUCKETS_SECONDS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
];
/** A metric every collectDefaultMetrics() registers: its presence means the defaults are there. */
const DEFAULT_METRICS_MARKER = 'process_cpu_user_seconds_total';
/**
 * Default gauges whose `_total` suffix promtool rejects as a counter's; the same counts stay
 * exported by type as nodejs_active_handles, nodejs_active_requests and nodejs_active_resources.
 */
const MISNAMED_DEFAULT_GAUGES = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

/** Failures outside any request, each of which makes the process drain and exit. */
export const PROCESS_FAULTS = ['unhandled_rejection', 'uncaught_exception'] as const;
export type ProcessFault = (typeof PROCESS_FAULTS)[number];

export interface MetricsOptions {
  version: string;
}

export interface RuntimeMetrics {
  observeRequest: (method: string, route: string, status: number, seconds: number) => void;
  observeCheck: (component: string, health: ComponentHealth) => void;
  observeFault: (kind: ProcessFault) => void;
  /**
   * Starts each route's successful answers at 0, so that rates and ratios over them have a value
   * on a pod that has not served them yet.
   */
  initRequests: (routes: readonly { path: string; methods: readonly string[] }[]) => void;
  /**
   * Where dependency_up comes from: readiness (cached) is asked at each scrape, so the gauge is
   * current. Until this is called, scrapes show no dependency_up.
   */
  collectReadinessFrom: (readiness: () => Promise<ReadinessReport>) => void;
}

/** Registers CoffeeBuddy's metrics, and Node's default ones if missing, on `registry`. */
export function createMetrics(registry: Registry, options: MetricsOptions): RuntimeMetrics {
  let readiness: (() => Promise<ReadinessReport>) | undefined;
  if (registry.getSingleMetric(DEFAULT_METRICS_MARKER) === undefined) {
    collectDefaultMetrics({ register: registry });
    for (const name of MISNAMED_DEFAULT_GAUGES) registry.removeSingleMetric(name);
  }
  const registers = [registry];
  const labelNames = ['method', 'route', 'status'] as const;
  const requests = new Counter({
    name: `${METRIC_PREFIX}http_requests_total`,
    help: 'HTTP requests answered, by method, route template and status code.',
    labelNames,
    registers,
  });
  const duration = new Histogram({
    name: `${METRIC_PREFIX}http_request_duration_seconds`,
    help: 'Time to answer HTTP requests, by method, route template and status code.',
    labelNames,
    buckets: LATENCY_BUCKETS_SECONDS,
    registers,
  });
  const dependencyUp = new Gauge({
    name: `${METRIC_PREFIX}dependency_up`,
    help: 'Whether a dependency is usable (1) or not (0), as /health/ready sees it.',
    labelNames: ['component'] as const,
    registers,
    async collect() {
      if (readiness === undefined) return;
      const report = await readiness();
      for (const [component, health] of Object.entries(report.components)) {
        dependencyUp.set({ component }, health.status === COMPONENT_OK ? 1 : 0);
      }
    },
  });
  const checkDuration = new Histogram({
    name: `${METRIC_PREFIX}dependency_check_duration_seconds`,
    help: 'Time taken by dependency health checks, by component.',
    labelNames: ['component'] as const,
    buckets: LATENCY_BUCKETS_SECONDS,
    registers,
    // Families are collected in parallel: wait for the same (shared) check dependency_up runs.
    async collect() {
      await readiness?.();
    },
  });
  const faults = new Counter({
    name: `${METRIC_PREFIX}process_faults_total`,
    help: 'Failures outside any request (unhandled rejections, uncaught exceptions); each drains the process.',
    labelNames: ['kind'] as const,
    registers,
  });
  for (const kind of PROCESS_FAULTS) faults.inc({ kind }, 0);
  new Gauge({
    name: `${METRIC_PREFIX}build_info`,
    help: 'Build of the running CoffeeBuddy runtime; always 1.',
    labelNames: ['version', 'node_version'] as const,
    registers,
  }).set({ version: options.version, node_version: process.version }, 1);

  return {
    observeRequest: (method, route, status, seconds) => {
      const labels = { method, route, status: String(status) };
      requests.inc(labels);
      duration.observe(labels, seconds);
    },
    observeCheck: (component, health) => {
      checkDuration.observe({ component }, health.latencyMs / 1000);
    },
    initRequests: (routes) => {
      for (const route of routes) {
        for (const method of route.methods.filter((m) => m !== 'HEAD')) {
          requests.inc({ method, route: route.path, status: '200' }, 0);
        }
      }
    },
    observeFault: (kind) => {
      faults.inc({ kind });
    },
    collectReadinessFrom: (source) => {
      readiness = source;
    },
  };
}
