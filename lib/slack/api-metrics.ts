import { Counter, Histogram, type Registry } from 'prom-client';
import { LATENCY_BUCKETS_SECONDS, METRIC_PREFIX } from '../metrics';

/**
 * How a Web API call ended: answered `ok`; 429 (`rate_limited`); `ok: false` or an HTTP error
 * (`slack_error`); a token problem, or no token to send (`auth_error`); no answer
 * (`network_error`, the caller's abort included); not sent at all (`refused`: a response_url that
 * is not Slack's, or past its budget).
 */
export const SLACK_API_OUTCOMES = [
  'ok',
  'rate_limited',
  'slack_error',
  'auth_error',
  'network_error',
  'refused',
] as const;
export type SlackApiOutcome = (typeof SLACK_API_OUTCOMES)[number];

/** The method every CoffeeBuddy bot calls first: its series exist from a pod's start. */
export const FIRST_METHOD = 'chat.postMessage';

/** Slack's method names (`chat.postMessage`, `oauth.v2.access`): bounded label values. */
const METHOD = /^[a-z][a-zA-Z0-9]*(\.[a-zA-Z0-9]+){1,4}$/;
const METHOD_MAX_CHARS = 64;

export interface SlackApiMetrics {
  /** One call, its token re-read and network retry included, from its start to its outcome. */
  observeCall(method: string, outcome: SlackApiOutcome, seconds: number): void;
}

/** Whether `method` is a Web API method name: fit for a URL path and a label, never a URL. */
export function isSlackMethod(method: string): boolean {
  return method.length <= METHOD_MAX_CHARS && METHOD.test(method);
}

/** Registers the Web API call counter and histogram; chat.postMessage's series start at 0. */
export function createSlackApiMetrics(registry: Registry): SlackApiMetrics {
  const registers = [registry];
  const calls = new Counter({
    name: `${METRIC_PREFIX}slack_api_calls_total`,
    help: 'Slack Web API calls and response_url posts, by method and outcome (ok, rate_limited, slack_error, auth_error, network_error, refused).',
    labelNames: ['method', 'outcome'] as const,
    registers,
  });
  const duration = new Histogram({
    name: `${METRIC_PREFIX}slack_api_duration_seconds`,
    help: 'Time Slack Web API calls took, retries included, by method.',
    labelNames: ['method'] as const,
    buckets: LATENCY_BUCKETS_SECONDS,
    registers,
  });
  for (const outcome of SLACK_API_OUTCOMES) calls.inc({ method: FIRST_METHOD, outcome }, 0);
  duration.zero({ method: FIRST_METHOD });
  return {
    observeCall(method, outcome, seconds) {
      calls.inc({ method, outcome });
      duration.observe({ method }, seconds);
    },
  };
}
