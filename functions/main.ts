// The image's entry: serves the `coffeebuddy` function through functions-framework's own server,
// behind CoffeeBuddy's edge (body limits before any byte is read, JSON errors, keep-alive above
// queue-proxy's) and lifecycle (drain on SIGTERM, faults outside a request drain too).
import http from 'node:http';
import type { RequestListener } from 'node:http';
import { getTestServer } from '@google-cloud/functions-framework/testing';
import { Edge } from '../lib/http/edge';
import { UNMATCHED_ROUTE } from '../lib/http/router';
import { Shutdown } from '../lib/http/shutdown';
import { app } from './index';

/** headersTimeout must exceed keepAliveTimeout, or Node may cut a connection mid-request. */
const HEADERS_TIMEOUT_MARGIN_MS = 5000;

type ExpressApp = RequestListener & { use: (handler: unknown) => unknown };

/**
 * The Express app functions-framework builds for a registered function: its public testing entry
 * returns http.createServer(app), whose 'request' listener is that app. Checked, because the
 * framework's version is pinned on this fact (package.json) and a change must fail loudly.
 */
function frameworkApp(target: string): ExpressApp {
  const [listener] = getTestServer(target).listeners('request');
  if (
    typeof listener !== 'function' ||
    typeof (listener as Partial<ExpressApp>).use !== 'function'
  ) {
    throw new Error('functions-framework no longer serves an Express app: see functions/main.ts');
  }
  return listener as ExpressApp;
}

const { settings, router, lifecycle, logger, metrics, contexts, observeRequest } = app;
const routeFor = (path: string) => router.routeFor(path)?.path ?? UNMATCHED_ROUTE;
const edge = new Edge({
  contexts,
  limitFor: (path) => router.routeFor(path)?.maxBodyBytes ?? settings.MAX_BODY_BYTES,
  routeFor,
  observe: observeRequest,
  lifecycle,
  logger,
});
const express = frameworkApp('coffeebuddy');
express.use(edge.errorHandler);

const server = http.createServer(edge.handler(express));
server.on('checkContinue', edge.continueHandler(express));
server.keepAliveTimeout = settings.KEEP_ALIVE_TIMEOUT_MS;
server.headersTimeout = settings.KEEP_ALIVE_TIMEOUT_MS + HEADERS_TIMEOUT_MARGIN_MS;
server.requestTimeout = Math.max(server.requestTimeout, server.headersTimeout);

const shutdown = new Shutdown({
  server,
  lifecycle,
  logger,
  timeoutMs: settings.SHUTDOWN_TIMEOUT_MS,
  observeFault: metrics.observeFault,
  exit: (code) => process.exit(code),
});
process.on('SIGTERM', shutdown.onSignal);
process.on('SIGINT', shutdown.onSignal);
process.on('unhandledRejection', (reason) => {
  shutdown.onFault('unhandled_rejection', reason);
});
process.on('uncaughtException', (error) => {
  shutdown.onFault('uncaught_exception', error);
});

server.on('error', (error: NodeJS.ErrnoException) => {
  logger.error('cannot listen', { port: settings.PORT, code: error.code ?? error.name });
  process.exit(1);
});
server.listen(settings.PORT, settings.LISTEN_HOST === '' ? undefined : settings.LISTEN_HOST, () => {
  logger.info('listening', {
    port: settings.PORT,
    host: settings.LISTEN_HOST || 'every interface',
    // Since the process started: what a cold start costs before the first request.
    startupMs: Math.round(performance.now()),
  });
});
