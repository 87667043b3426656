import type { HttpFunction } from '@google-cloud/functions-framework';
import { Registry } from 'prom-client';
import { coffeebuddyRoutes } from '../functions/coffeebuddy';
import { version } from '../package.json';
import { buildOryClient } from './clients/ory';
import { UpstreamError } from './clients/upstream';
import { buildVaultClient } from './clients/vault';
import { createLogger } from './logger';
import { createMetrics } from './metrics';
import { ReadinessChecker } from './readiness';
import { Router, type Route } from './router';
import { getSettings } from './settings';
import { RecentIds } from './slack/recent-ids';
import { SlackRegistry } from './slack/registry';
import { SigningSecret } from './slack/signing-secret';
import {
  COMPONENT_OK,
  type Logger,
  type OryClientFactory,
  type Settings,
  type VaultClient,
  type VaultClientFactory,
} from './types';

export interface CreateAppOptions {
  settings?: Settings;
  vaultClientFactory?: VaultClientFactory;
  oryClientFactory?: OryClientFactory;
  /** Where metrics are registered; by default a registry of the app's own, never the global one. */
  registry?: Registry;
  logger?: Logger;
  /** What CoffeeBuddy does with slash commands, events and interactions. */
  slackRegistry?: SlackRegistry;
  /** Seconds since the epoch, for Slack's timestamp check; injectable for tests. */
  nowSeconds?: () => number;
}

/** Slack's event ids, kept to recognise redeliveries: Slack retries within minutes. */
const RECENT_EVENTS_MAX = 10_000;
const RECENT_EVENTS_TTL_MS = 30 * 60 * 1000;
/** A slash command's answer must leave time for the network inside Slack's 3 seconds. */
const COMMAND_TIMEOUT_MS = 2500;

/** Where the signing secret comes from, if anywhere. */
function signingSecret(settings: Settings, vault: VaultClient): SigningSecret | undefined {
  const ttl = settings.SLACK_SECRET_TTL_MS;
  if (settings.SLACK_SIGNING_SECRET !== '') {
    const secret = settings.SLACK_SIGNING_SECRET;
    return new SigningSecret(() => Promise.resolve(secret), ttl);
  }
  const path = settings.SLACK_SIGNING_SECRET_VAULT_PATH;
  if (path === '') return undefined;
  const key = settings.SLACK_SIGNING_SECRET_VAULT_KEY;
  return new SigningSecret(async () => {
    const value = (await vault.readSecret(path))[key];
    if (typeof value !== 'string' || value === '') {
      throw new UpstreamError(`no "${key}" in ${settings.VAULT_KV_MOUNT}/${path}`);
    }
    return value;
  }, ttl);
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
  const secret = signingSecret(settings, clients.vault);
  const checker = new ReadinessChecker({
    components: {
      ...clients,
      ...(secret === undefined ? {} : { slack: { healthCheck: () => secret.healthCheck() } }),
    },
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
  const routes = coffeebuddyRoutes({
    checker,
    registry,
    metricsPath: settings.METRICS_PATH,
    slack: {
      secret,
      registry: options.slackRegistry ?? new SlackRegistry(),
      recentEvents: new RecentIds(RECENT_EVENTS_MAX, RECENT_EVENTS_TTL_MS),
      maxBodyBytes: settings.SLACK_MAX_BODY_BYTES,
      commandTimeoutMs: COMMAND_TIMEOUT_MS,
      nowSeconds: options.nowSeconds ?? (() => Math.floor(Date.now() / 1000)),
      logger,
      count: runtimeMetrics.observeSlack,
    },
  });
  const routerOptions = { logger, observe: runtimeMetrics.observeRequest };
  const functions: Record<string, HttpFunction> = {
    coffeebuddy: new Router(routes, routerOptions).dispatch,
  };
  // A function of its own per name: one route answers on any path, several dispatch by path.
  const byName = new Map<string, Route[]>();
  for (const route of routes) byName.set(route.name, [...(byName.get(route.name) ?? []), route]);
  for (const [name, named] of byName) {
    const router = new Router(named, routerOptions);
    const [only] = named;
    functions[name] =
      named.length === 1 && only !== undefined ? router.serve(only) : router.dispatch;
  }

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
