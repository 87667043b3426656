import type { HttpFunction } from '@google-cloud/functions-framework';
import { Registry } from 'prom-client';
import { coffeebuddyRoutes } from '../functions/coffeebuddy';
import { version } from '../package.json';
import { buildOryClient } from './clients/ory';
import { buildVaultClient } from './clients/vault';
import { createLogger } from './logger';
import { createMetrics } from './metrics';
import { ReadinessChecker } from './readiness';
import { Router } from './router';
import { getSettings } from './settings';
import {
  COMPONENT_OK,
  type Logger,
  type OryClientFactory,
  type Settings,
  type VaultClientFactory,
} from './types';

export interface CreateAppOptions {
  settings?: Settings;
  vaultClientFactory?: VaultClientFactory;
  oryClientFactory?: OryClientFactory;
  /** Where metrics are registered; by default a registry of the app's own, never the global one. */
  registry?: Registry;
  logger?: Logger;
}

export interface App {
  readonly settings: Settings;
  readonly registry: Registry;
  readonly checker: ReadinessChecker;
  /** Each endpoint's function by name, and `coffeebuddy`, which routes to all of them. */
  readonly functions: Readonly<Record<string, HttpFunction>>;
  /** Releases the clients' sockets. */
  close(): void;
}

/** The composition root: builds clients, readiness, metrics and functions from what it is given. */
export function createApp(options: CreateAppOptions = {}): App {
  const settings = options.settings ?? getSettings();
  const logger = options.logger ?? createLogger(settings.LOG_LEVEL);
  const registry = options.registry ?? new Registry();
  const clients = {
    vault: (options.vaultClientFactory ?? buildVaultClient)(settings),
    ory: (options.oryClientFactory ?? buildOryClient)(settings),
  };
  const checker = new ReadinessChecker({
    components: clients,
    ttlMs: settings.READINESS_CACHE_TTL_MS,
    timeoutMs: settings.READINESS_TIMEOUT_MS,
    onCheck: (component, health, previous) => {
      runtimeMetrics.observeCheck(component, health);
      if (previous?.status === health.status) return;
      const fields = { component, status: health.status, previous: previous?.status ?? 'unknown' };
      if (health.status === COMPONENT_OK) {
        logger.info(`${component} is available`, fields);
      } else {
        logger.warn(`${component} is unavailable`, { ...fields, reason: health.error });
      }
    },
  });
  const runtimeMetrics = createMetrics(registry, { version, readiness: () => checker.check() });
  const routes = coffeebuddyRoutes({ checker, registry, metricsPath: settings.METRICS_PATH });
  const router = new Router(routes, { logger, observe: runtimeMetrics.observeRequest });
  const functions: Record<string, HttpFunction> = { coffeebuddy: router.dispatch };
  for (const route of routes) functions[route.name] = router.serve(route);

  return {
    settings,
    registry,
    checker,
    functions,
    close: () => {
      for (const client of Object.values(clients)) client.close?.();
    },
  };
}
