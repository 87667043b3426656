import type { Registry } from 'prom-client';
import type { Lifecycle } from '../lib/lifecycle';
import type { ReadinessChecker } from '../lib/readiness';
import type { Route } from '../lib/http/router';
import { healthLive } from './healthLive';
import { healthReady } from './healthReady';
import { metrics } from './metrics';
import { slackRoutes, type SlackDependencies } from './slack';

export interface ProbeDependencies {
  checker: ReadinessChecker;
  lifecycle: Lifecycle;
  registry: Registry;
  metricsPath: string;
}

/** The probes and /metrics: every entry the image serves has them. */
export function probeRoutes(deps: ProbeDependencies): Route[] {
  return [
    healthLive(),
    healthReady(deps.checker, deps.lifecycle),
    metrics(deps.registry, deps.metricsPath),
  ];
}

/** Every endpoint the `coffeebuddy` entry serves; routes sharing a name form one function. */
export function coffeebuddyRoutes(deps: ProbeDependencies & { slack: SlackDependencies }): Route[] {
  return [...probeRoutes(deps), ...slackRoutes(deps.slack)];
}
