import http from 'node:http';
import type { HttpFunction } from '@google-cloud/functions-framework';
import { Connections } from '../lib/http/connections';
import { Pipeline } from '../lib/http/pipeline';
import { Shutdown } from '../lib/http/shutdown';
import type { App } from './app';

/** headersTimeout must exceed keepAliveTimeout, or Node may cut a connection mid-request. */
const HEADERS_TIMEOUT_MARGIN_MS = 5000;

type ExpressApp = http.RequestListener & { use: (handler: unknown) => unknown };

let served = 0;

/**
 * The Express app functions-framework builds around `handler`, with its body parsers, execution
 * context and error handling: its public testing entry returns http.createServer(app), whose
 * 'request' listener is that app. Checked, because the framework's version is pinned on this fact
 * (package.json) and a change must fail loudly.
 */
export function frameworkApp(handler: HttpFunction): ExpressApp {
  // Loaded here, not at start: a process whose routes parse no body never loads Express.
  /* eslint-disable @typescript-eslint/no-require-imports */
  const functionsFramework =
    require('@google-cloud/functions-framework') as typeof import('@google-cloud/functions-framework');
  const { getTestServer } =
    require('@google-cloud/functions-framework/testing') as typeof import('@google-cloud/functions-framework/testing');
  /* eslint-enable @typescript-eslint/no-require-imports */
  served += 1;
  const name = `coffeebuddy_pipeline_${served}`;
  functionsFramework.http(name, handler);
  const [listener] = getTestServer(name).listeners('request');
  if (
    typeof listener !== 'function' ||
    typeof (listener as Partial<ExpressApp>).use !== 'function'
  ) {
    throw new Error('functions-framework no longer serves an Express app: see functions/server.ts');
  }
  return listener as ExpressApp;
}

export interface CoffeebuddyServer {
  /** Not yet listening. */
  server: http.Server;
  /** Its drain, for signals and faults. */
  shutdown: Shutdown;
}

export interface ServerOptions {
  /** The function to serve, by default the app's own (FUNCTION_TARGET); `coffeebuddy` routes to every endpoint. */
  target?: string;
  /** Ends the process after the drain; tests pass their own. */
  exit?: (code: number) => void;
}

/**
 * The one request pipeline, for the image's entry and the in-process tests alike: CoffeeBuddy's
 * pipeline (records each request once, routes, refuses bodies before reading them, reads the
 * bodies its routes ask for, and sends routes that want a parsed body through functions-framework's
 * Express app), with keep-alive above queue-proxy's and the drain.
 */
export function createServer(app: App, options: ServerOptions = {}): CoffeebuddyServer {
  const { settings, lifecycle, logger } = app;
  const target = options.target ?? app.target;
  const router = app.routers[target];
  if (router === undefined) throw new Error(`no function named ${target}`);
  const connections = new Connections(lifecycle);
  let express: ExpressApp | undefined;
  const pipeline: Pipeline = new Pipeline({
    router,
    framework: () => {
      if (express === undefined) {
        express = frameworkApp(router.invoke);
        express.use(pipeline.errorHandler);
      }
      return express;
    },
    defaultMaxBodyBytes: settings.MAX_BODY_BYTES,
    contexts: app.contexts,
    observe: app.observeRequest,
    connections,
    logger,
  });

  const server = http.createServer(pipeline.listener);
  server.on('checkContinue', pipeline.continueListener);
  connections.attach(server);
  server.keepAliveTimeout = settings.KEEP_ALIVE_TIMEOUT_MS;
  server.headersTimeout = settings.KEEP_ALIVE_TIMEOUT_MS + HEADERS_TIMEOUT_MARGIN_MS;
  server.requestTimeout = Math.max(server.requestTimeout, server.headersTimeout);

  const shutdown = new Shutdown({
    server,
    connections,
    lifecycle,
    logger,
    timeoutMs: settings.SHUTDOWN_TIMEOUT_MS,
    observeFault: app.metrics.observeFault,
    release: () => app.close(),
    exit: options.exit ?? ((code) => process.exit(code)),
  });
  return { server, shutdown };
}
