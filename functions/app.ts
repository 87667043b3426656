import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type { HttpFunction } from '@google-cloud/functions-framework';
import { Registry } from 'prom-client';
import { buildOryClient, type OryClientFactory } from '../lib/clients/ory';
import {
  buildPostgresClient,
  type PostgresClient,
  type PostgresClientFactory,
} from '../lib/clients/postgres';
import {
  buildVaultClient,
  reportingSecrets,
  vaultSecretValue,
  type VaultClient,
  type VaultClientFactory,
} from '../lib/clients/vault';
import { parseCeOverrides } from '../lib/config/formats';
import {
  EVENT_FUNCTION_TARGETS,
  EXIT_CONFIG,
  eventAuthenticationProblems,
  getSettings,
  NO_AUDIENCE,
  SENSITIVE_SETTINGS,
  SettingsError,
  type FunctionTarget,
  type Settings,
} from '../lib/config/settings';
import { CloudEventPublisher, type Publisher } from '../lib/eventing/publisher';
import {
  createAuthFailureCounter,
  SenderIdentity,
  senderAuthentication,
  type Authenticate,
} from '../lib/eventing/sender-identity';
import { COMPONENT_OK, HEALTH_PATH_PREFIX } from '../lib/health';
import { recordRequest, type RequestObserver } from '../lib/http/pipeline';
import { Router, UNMATCHED_ROUTE, type Route } from '../lib/http/router';
import { createLogger, type Logger } from '../lib/logger';
import { Lifecycle } from '../lib/lifecycle';
import { createMetrics, type RuntimeMetrics } from '../lib/metrics';
import { RequestContexts, runInContext } from '../lib/request-context';
import { ReadinessChecker, type CheckListener, type ReadinessReport } from '../lib/readiness';
import { Redactor } from '../lib/redactor';
import type { SlackClient, SlackClientFactory } from '../lib/slack/client';
import type { SlackHandlers } from '../lib/slack/handlers';
import { RecentIds, type SeenIds } from '../lib/slack/recent-ids';
import { SigningSecret } from '../lib/slack/signing-secret';
import { SlackVerifier } from '../lib/slack/verify';
import { createSlackMetrics, type SlackMetrics } from '../lib/slack/metrics';
import { DeadDepth } from '../lib/slack/dead-depth';
import { DeadLetters } from '../lib/slack/dead-letters';
import { createDeadLetterMetrics } from '../lib/slack/dead-metrics';
import { DeadLetterStore } from '../lib/slack/dead-store';
import { createSlackApiMetrics } from '../lib/slack/api-metrics';
import { ResponseUrls } from '../lib/slack/respond';
import { buildSlackClient } from '../lib/slack/web-api';
import { createWorkMetrics } from '../lib/slack/work-metrics';
import { WorkStore } from '../lib/slack/work-store';
import { kindOf, SlackWorker } from '../lib/slack/worker';
import { version } from '../package.json';
import { coffeebuddyRoutes, probeRoutes, type ProbeDependencies } from './coffeebuddy';
import { coffeeBuddyHandlers } from './features';
import { SLACK_DEAD_LETTER, slackDeadLetter } from './slackDeadLetter';
import { SLACK_WORKER, slackWorker } from './slackWorker';

export interface CreateAppOptions {
  settings?: Settings;
  vaultClientFactory?: VaultClientFactory;
  oryClientFactory?: OryClientFactory;
  /** Where metrics are registered; by default a registry of the app's own, never the global one. */
  registry?: Registry;
  logger?: Logger;
  /**
   * Known secret values, removed from every line of the default logger: the secret sources
   * report what they read. Pass the one a given `logger` redacts with.
   */
  redactor?: Redactor;
  /**
   * What CoffeeBuddy does with slash commands, events and interactions: the features' seat
   * (functions/features) by default; tests that need bare handlers pass their own.
   */
  slackHandlers?: SlackHandlers;
  /** Seconds since the epoch, for Slack's timestamp check; injectable for tests. */
  nowSeconds?: () => number;
  /** The process's state and in-flight work; shutdown drains it. */
  lifecycle?: Lifecycle;
  /** Where Slack event ids are remembered; by default in this process's memory only. */
  seenEvents?: SeenIds;
  /**
   * The function this process serves (FUNCTION_TARGET by default): the worker and dead-letter
   * functions are apps of their own, with the probes, /metrics and the database.
   */
  target?: FunctionTarget;
  /**
   * Whether this app uses PostgreSQL: a client (one pool), its metrics and the `postgres`
   * readiness component. By default only the worker and dead-letter functions do: the Slack
   * ingress and the probes never connect.
   */
  database?: boolean;
  postgresClientFactory?: PostgresClientFactory;
  /** Builds the Slack Web API client of every app that runs handlers (not the dead-letter one). */
  slackClientFactory?: SlackClientFactory;
}

/** Slack's event ids, kept to recognise redeliveries: Slack retries within minutes. */
const RECENT_EVENTS_MAX = 10_000;
const RECENT_EVENTS_TTL_MS = 30 * 60 * 1000;
/** A slash command's answer must leave time for the network inside Slack's 3 seconds. */
const COMMAND_TIMEOUT_MS = 2500;
/**
 * Room for a CloudEvent's attributes around the Slack body it carries, in structured mode (in
 * binary mode they are headers): K_CE_OVERRIDES' at most 8 KiB, the core attributes and Knative's
 * error attributes on a dead letter (knativeerrordata: 1,024 bytes in base64).
 */
const EVENT_ATTRIBUTES_BYTES = 16 * 1024;
/** The dead-letter gauge's count: reused this long, and never waited for longer at a scrape. */
const DEAD_COUNT_TTL_MS = 5000;
const DEAD_COUNT_TIMEOUT_MS = 1000;

/** Where the signing secret comes from, if anywhere. */
function signingSecret(
  settings: Settings,
  vault: VaultClient,
  redactor: Redactor,
): SigningSecret | undefined {
  const reuse = {
    ttlMs: settings.SLACK_SECRET_TTL_MS,
    staleMs: settings.SLACK_SECRET_STALE_MS,
    redactor,
  };
  if (settings.SLACK_SIGNING_SECRET !== '') {
    const secret = settings.SLACK_SIGNING_SECRET;
    return new SigningSecret({ load: () => Promise.resolve(secret), ...reuse });
  }
  const path = settings.SLACK_SIGNING_SECRET_VAULT_PATH;
  if (path === '') return undefined;
  const key = settings.SLACK_SIGNING_SECRET_VAULT_KEY;
  const load = vaultSecretValue(vault, { mount: settings.VAULT_KV_MOUNT, path, key });
  return new SigningSecret({ load, ...reuse });
}

/** With K_SINK, the publisher of verified Slack requests; without, none (handled in process). */
function slackPublisher(
  settings: Settings,
  logger: Logger,
  metrics: SlackMetrics,
): Publisher | undefined {
  if (settings.K_SINK === '') return undefined;
  return new CloudEventPublisher({
    sink: settings.K_SINK,
    extensions: parseCeOverrides(settings.K_CE_OVERRIDES),
    timeoutMs: settings.SLACK_PUBLISH_TIMEOUT_MS,
    logger,
    observe: metrics.observePublish,
  });
}

/** Logs each change of a dependency's state (the first result too), once. */
function logTransitions(logger: Logger): CheckListener {
  return (component, health, previous) => {
    if (previous?.status === health.status) return;
    const fields = { component, status: health.status, previous: previous?.status ?? 'unknown' };
    if (health.status === COMPONENT_OK) {
      logger.info(`${component} is available`, fields);
    } else {
      logger.warn(`${component} is unavailable`, { ...fields, reason: health.error });
    }
  };
}

/** One router per function name, and the entry's (`entry`), which routes to every route. */
function routersByName(
  routes: readonly Route[],
  entry: string,
  logger: Logger,
): Record<string, Router> {
  const byName = new Map<string, Route[]>();
  for (const route of routes) byName.set(route.name, [...(byName.get(route.name) ?? []), route]);
  const routers: Record<string, Router> = {};
  for (const [name, named] of byName) routers[name] = new Router(named, logger);
  routers[entry] = new Router(routes, logger);
  return routers;
}

/**
 * A router as a function functions-framework serves alone (`--target`): each request recorded
 * once, in its context, as the pipeline does behind the image's entry.
 */
function standalone(
  router: Router,
  contexts: RequestContexts,
  observe: RequestObserver,
): HttpFunction {
  return (req, res) => {
    const route = router.routeFor(req.path)?.path ?? UNMATCHED_ROUTE;
    const context = recordRequest(req, res, route, contexts, observe);
    return runInContext(context, (): unknown => router.invokeAlone(req, res));
  };
}

/**
 * Metrics for every answered request, and one access log line at info, except for probes and
 * scrapes unless ACCESS_LOG_PROBES: route template and status, never a path, query or body.
 */
function requestObserver(
  settings: Settings,
  logger: Logger,
  metrics: RuntimeMetrics,
): RequestObserver {
  const quiet = (route: string) =>
    !settings.ACCESS_LOG_PROBES &&
    (route.startsWith(HEALTH_PATH_PREFIX) || route === settings.METRICS_PATH);
  return (method, route, status, seconds, context) => {
    metrics.observeRequest(method, route, status, seconds);
    if (quiet(route)) return;
    logger.info('request', {
      method,
      route,
      status,
      durationMs: Math.round(seconds * 1e4) / 10,
      ...context,
    });
  };
}

/** What the worker and dead-letter functions are built from. */
interface TakerDependencies {
  postgres: PostgresClient;
  handlers: SlackHandlers;
  /** None in the dead-letter function, which runs no handlers. */
  slack: SlackClient | undefined;
  /** Where handlers' respond() posts; none in the dead-letter function. */
  responseUrls: ResponseUrls | undefined;
  /** This process's readiness, for handlers that report it. */
  readiness: () => Promise<ReadinessReport>;
  redactor: Redactor;
  lifecycle: Lifecycle;
  logger: Logger;
  registry: Registry;
}

/**
 * How an event function checks who delivers to it: with EVENTING_OIDC_AUDIENCE, each delivery's
 * Bearer token (Knative Eventing's `authentication-oidc`); with `none` or unset, not at all.
 */
function eventAuthentication(
  target: FunctionTarget,
  settings: Settings,
  deps: Pick<TakerDependencies, 'logger' | 'registry'>,
): Authenticate | undefined {
  const countFailure = createAuthFailureCounter(deps.registry);
  const audience = settings.EVENTING_OIDC_AUDIENCE;
  if (audience === '' || audience === NO_AUDIENCE) {
    if (audience === NO_AUDIENCE) {
      deps.logger.warn('event deliveries are not authenticated', {
        function: target,
        setting: 'EVENTING_OIDC_AUDIENCE',
      });
    }
    return undefined;
  }
  const identity = new SenderIdentity({
    issuer: settings.EVENTING_OIDC_ISSUER,
    jwksUrl: settings.EVENTING_OIDC_JWKS_URL,
    tokenFile: settings.EVENTING_OIDC_TOKEN_FILE,
    caFile: settings.EVENTING_OIDC_CA_FILE,
    httpsOnly: settings.NODE_ENV === 'production',
    audience,
    subjects:
      settings.EVENTING_OIDC_SUBJECTS === '' ? [] : settings.EVENTING_OIDC_SUBJECTS.split(','),
  });
  return senderAuthentication(identity, { name: target, logger: deps.logger, countFailure });
}

/**
 * The worker's or the dead-letter function's endpoints, each event claimed or recorded in
 * PostgreSQL, and what closing it does (the worker gives back the claims it still holds).
 */
function eventTaker(
  target: FunctionTarget,
  settings: Settings,
  deps: TakerDependencies,
): ReturnType<typeof slackWorker> & { close: () => Promise<void> } {
  const { handlers, lifecycle, logger } = deps;
  const metrics = createWorkMetrics(deps.registry);
  const endpoints = {
    logger,
    countInvalid: () => {
      metrics.observeWork('unknown', 'invalid');
    },
    maxBodyBytes: settings.SLACK_MAX_BODY_BYTES + EVENT_ATTRIBUTES_BYTES,
    maxInFlight: settings.EVENT_MAX_IN_FLIGHT,
    countOverloaded: (type: string | undefined) => {
      metrics.observeWork(kindOf(type ?? ''), 'overloaded');
    },
    authenticate: eventAuthentication(target, settings, deps),
  };
  if (target !== SLACK_WORKER) {
    const deadStore = new DeadLetterStore(deps.postgres);
    const depth = new DeadDepth({
      count: () => deadStore.countDead(),
      ttlMs: DEAD_COUNT_TTL_MS,
      timeoutMs: DEAD_COUNT_TIMEOUT_MS,
      logger,
    });
    const deadLetters = new DeadLetters({
      store: deadStore,
      logger,
      metrics,
      deadMetrics: createDeadLetterMetrics(deps.registry, () => depth.read()),
      lifecycle,
      retentionMs: settings.SLACK_DEAD_RETENTION_MS,
      maxRows: settings.SLACK_DEAD_MAX_ROWS,
      // An event is kept whole only when the worker would take it again.
      maxDataBytes: endpoints.maxBodyBytes,
    });
    return { ...slackDeadLetter(deadLetters, endpoints), close: () => deadLetters.close() };
  }
  if (deps.slack === undefined || deps.responseUrls === undefined) {
    throw new Error(`${target} needs a Slack client`);
  }
  const worker = new SlackWorker({
    store: new WorkStore(deps.postgres, workerName()),
    handlers,
    lifecycle,
    logger,
    metrics,
    slack: deps.slack,
    postgres: deps.postgres,
    responseUrls: deps.responseUrls,
    readiness: deps.readiness,
    redact: (text) => deps.redactor.redact(text),
    handlerTimeoutMs: settings.SLACK_HANDLER_TIMEOUT_MS,
    leaseMs: settings.SLACK_WORK_LEASE_MS,
    retentionMs: settings.SLACK_WORK_RETENTION_MS,
  });
  return { ...slackWorker(worker, endpoints), close: () => worker.close() };
}

export interface App {
  readonly settings: Settings;
  /** The function this app serves behind the image's entry (createServer's default). */
  readonly target: FunctionTarget;
  readonly registry: Registry;
  readonly metrics: RuntimeMetrics;
  readonly checker: ReadinessChecker;
  readonly lifecycle: Lifecycle;
  readonly logger: Logger;
  /** Known secret values: every line of the default logger is redacted with it. */
  readonly redactor: Redactor;
  /** Each function's router by name, `coffeebuddy` routing to every endpoint: what createServer serves. */
  readonly routers: Readonly<Record<string, Router>>;
  /** Each request's id and trace id. */
  readonly contexts: RequestContexts;
  /** Counts and logs an answered request. */
  readonly observeRequest: RequestObserver;
  /** The same functions for functions-framework to serve alone (`--target=<name>`). */
  readonly functions: Readonly<Record<string, HttpFunction>>;
  /** The PostgreSQL client when the app uses the database. */
  readonly postgres: PostgresClient | undefined;
  /** Slack's Web API as the bot, in every app that runs handlers (none in the dead-letter app). */
  readonly slack: SlackClient | undefined;
  /**
   * Releases the clients' and the publisher's sockets and ends the database pool; the drain calls
   * it once requests (a publish is inside its request) and work are done.
   */
  close(): Promise<void>;
}

/** The composition root: builds clients, metrics, readiness and functions from what it is given. */
export function createApp(options: CreateAppOptions = {}): App {
  const settings = options.settings ?? getSettings();
  // The settings checked FUNCTION_TARGET; `--target` may name another function.
  const targetProblems = eventAuthenticationProblems(
    settings,
    options.target ?? settings.FUNCTION_TARGET,
  );
  if (targetProblems.length > 0) throw new SettingsError(targetProblems);
  const redactor = options.redactor ?? new Redactor();
  // Secrets given as settings are known from the start; those read later are reported as read.
  for (const name of SENSITIVE_SETTINGS) redactor.add(String(settings[name]));
  const logger = options.logger ?? createLogger(settings.LOG_LEVEL, undefined, redactor);
  const registry = options.registry ?? new Registry();
  const lifecycle = options.lifecycle ?? new Lifecycle();
  const clients = {
    vault: reportingSecrets(
      (options.vaultClientFactory ?? buildVaultClient)(settings, { redactor }),
      redactor,
    ),
    ory: (options.oryClientFactory ?? buildOryClient)(settings),
  };
  const secret = signingSecret(settings, clients.vault, redactor);

  const runtimeMetrics = createMetrics(registry, { version });
  const slackMetrics = createSlackMetrics(registry);
  const target = options.target ?? settings.FUNCTION_TARGET;
  const takesEvents = EVENT_FUNCTION_TARGETS.includes(target);
  // Only apps that use the database build a client (one pool) and check it.
  const postgres =
    (options.database ?? takesEvents)
      ? (options.postgresClientFactory ?? buildPostgresClient)(settings, {
          vault: clients.vault,
          logger,
          registry,
          redactor,
        })
      : undefined;
  // Every app that runs handlers can call Slack and respond: the worker, and the ingress.
  const runsHandlers = target !== SLACK_DEAD_LETTER;
  const slackApiMetrics = runsHandlers ? createSlackApiMetrics(registry) : undefined;
  const slack =
    slackApiMetrics === undefined
      ? undefined
      : (options.slackClientFactory ?? buildSlackClient)(settings, {
          vault: clients.vault,
          logger,
          metrics: slackApiMetrics,
        });
  const responseUrls =
    slackApiMetrics === undefined
      ? undefined
      : new ResponseUrls({
          prefix: settings.SLACK_RESPONSE_URL_PREFIX,
          timeoutMs: settings.SLACK_API_TIMEOUT_MS,
          logger,
          metrics: slackApiMetrics,
        });
  const logTransition = logTransitions(logger);
  // The event functions use Vault only when it holds the database password, and never Ory.
  const eventVault: Record<string, VaultClient> =
    settings.PG_PASSWORD_VAULT_PATH === '' ? {} : { vault: clients.vault };
  const checker = new ReadinessChecker({
    components: {
      ...(takesEvents ? eventVault : clients),
      ...(postgres === undefined ? {} : { postgres }),
      ...(secret === undefined || takesEvents
        ? {}
        : { slack: { healthCheck: () => secret.healthCheck() } }),
    },
    ttlMs: settings.READINESS_CACHE_TTL_MS,
    timeoutMs: settings.READINESS_TIMEOUT_MS,
    onCheck: (component, health, previous) => {
      runtimeMetrics.observeCheck(component, health);
      logTransition(component, health, previous);
    },
  });
  runtimeMetrics.collectReadinessFrom(() => checker.check());

  const handlers = options.slackHandlers ?? coffeeBuddyHandlers();
  const probes: ProbeDependencies = {
    checker,
    lifecycle,
    registry,
    metricsPath: settings.METRICS_PATH,
  };
  let routes: Route[];
  // The entry routes to every route of the app: `coffeebuddy`, or the event function itself.
  const entry: string = takesEvents ? target : 'coffeebuddy';
  let closeFunctions: () => Promise<void>;
  if (takesEvents) {
    if (postgres === undefined) throw new Error(`${target} needs the database`);
    const taker = eventTaker(target, settings, {
      postgres,
      handlers,
      slack,
      responseUrls,
      readiness: () => checker.check(),
      redactor,
      lifecycle,
      logger,
      registry,
    });
    routes = [...probeRoutes(probes), taker.route];
    closeFunctions = taker.close;
  } else {
    if (slack === undefined || responseUrls === undefined) {
      throw new Error(`${target} needs a Slack client`);
    }
    const publisher = slackPublisher(settings, logger, slackMetrics);
    routes = coffeebuddyRoutes({
      ...probes,
      slack: {
        verifier: new SlackVerifier({
          secret,
          maxBodyBytes: settings.SLACK_MAX_BODY_BYTES,
          nowSeconds: options.nowSeconds ?? (() => Math.floor(Date.now() / 1000)),
        }),
        handlers,
        publisher,
        seenEvents: options.seenEvents ?? new RecentIds(RECENT_EVENTS_MAX, RECENT_EVENTS_TTL_MS),
        maxPendingWork: settings.SLACK_MAX_PENDING_WORK,
        commandTimeoutMs: COMMAND_TIMEOUT_MS,
        lifecycle,
        handlerTimeoutMs: settings.SLACK_HANDLER_TIMEOUT_MS,
        slack,
        postgres,
        responseUrls,
        readiness: () => checker.check(),
        logger,
        count: slackMetrics.observeSlack,
      },
    });
    closeFunctions = () => {
      publisher?.close();
      return Promise.resolve();
    };
  }
  runtimeMetrics.initRequests(routes);
  const contexts = new RequestContexts(settings.REQUEST_ID_HEADER);
  const observeRequest = requestObserver(settings, logger, runtimeMetrics);
  const routers = routersByName(routes, entry, logger);
  const functions: Record<string, HttpFunction> = {};
  for (const [name, router] of Object.entries(routers)) {
    functions[name] = standalone(router, contexts, observeRequest);
  }

  return {
    settings,
    target,
    registry,
    metrics: runtimeMetrics,
    checker,
    lifecycle,
    logger,
    redactor,
    routers,
    contexts,
    observeRequest,
    functions,
    postgres,
    slack,
    close: async () => {
      // The functions first (a worker's claims, while the pool is still open; the publisher's
      // sockets), then the clients' sockets and the pool.
      await closeFunctions();
      for (const client of Object.values(clients)) client.close?.();
      slack?.close?.();
      responseUrls?.close();
      await postgres?.close();
    },
  };
}

/** This worker's name in the work table: the pod (host name), the process and a random part. */
function workerName(): string {
  return `${os.hostname()}/${process.pid}/${randomBytes(4).toString('hex')}`;
}

/** The process's app from its environment; bad settings end the process with one message. */
export function startApp(options: Pick<CreateAppOptions, 'target' | 'slackHandlers'> = {}): App {
  try {
    return createApp(options);
  } catch (error) {
    if (!(error instanceof SettingsError)) throw error;
    // A stack trace would bury it: a person needs only the list of bad settings.
    process.stderr.write(`coffeebuddy: ${error.message}\n`);
    process.exit(EXIT_CONFIG);
  }
}
