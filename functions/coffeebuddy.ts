import type { Registry } from 'prom-client';
import type { ReadinessChecker } from '../lib/readiness';
import type { Route } from '../lib/router';
import { healthLive } from './healthLive';
import { healthReady } from './healthReady';
import { metrics } from './metrics';

export interface CoffeebuddyDependencies {
  checker: ReadinessChecker;
  registry: Registry;
  metricsPath: string;
}

/** Every endpoint the `coffeebuddy` entry serves; each is also a function of its own. */
export function coffeebuddyRoutes(deps: CoffeebuddyDependencies): Route[] {
  return [healthLive(), healthReady(deps.checker), metrics(deps.registry, deps.metricsPath)];
}
