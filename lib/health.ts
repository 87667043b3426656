/** The probe paths Knative calls; no other endpoint may live under HEALTH_PATH_PREFIX. */
export const HEALTH_PATH_PREFIX = '/health/';
export const LIVE_PATH = '/health/live';
export const READY_PATH = '/health/ready';

export const COMPONENT_OK = 'ok';
export const COMPONENT_UNAVAILABLE = 'unavailable';
export type ComponentStatus = typeof COMPONENT_OK | typeof COMPONENT_UNAVAILABLE;

/** The outcome of one dependency check, as /health/ready reports it. */
export interface ComponentHealth {
  status: ComponentStatus;
  latencyMs: number;
  /** ISO-8601 time the check finished. */
  checkedAt: string;
  /** Why the component is unavailable, in words; never an upstream body, header or token. */
  error?: string;
}

/** A finished check: ok without a problem, else unavailable with the problem as its reason. */
export function componentHealth(latencyMs: number, problem?: string): ComponentHealth {
  return {
    status: problem === undefined ? COMPONENT_OK : COMPONENT_UNAVAILABLE,
    latencyMs: Math.round(latencyMs),
    checkedAt: new Date().toISOString(),
    ...(problem === undefined ? {} : { error: problem }),
  };
}

/** A dependency the readiness checker can ask. */
export interface HealthCheckClient {
  healthCheck(): Promise<ComponentHealth>;
  /** Releases sockets; the client is not used afterwards. */
  close?(): void;
}
