// The image's entry: the `coffeebuddy` function through the one request pipeline (createServer),
// with signals and faults outside a request draining the process.
import { startApp } from './app';
import { createServer } from './server';

// Start-up phases, for the listening line: every module of the bundle is evaluated by now.
const modulesLoadedAt = performance.now();
const app = startApp();
const appBuiltAt = performance.now();
const { settings, logger } = app;
const { server, shutdown } = createServer(app);
const serverBuiltAt = performance.now();

// A reader of the logs that went away (EPIPE) must not become an uncaught exception: its drain
// would log, fail to write again, and fault in a loop. Lines are lost; the process is not.
process.stdout.on('error', () => undefined);
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
  const listeningAt = performance.now();
  const ms = (value: number) => Math.round(value * 10) / 10;
  const nodeReadyAt = performance.nodeTiming.bootstrapComplete;
  logger.info('listening', {
    port: settings.PORT,
    host: settings.LISTEN_HOST || 'every interface',
    // Since the process started: what a cold start costs before the first request, by phase.
    startupMs: Math.round(listeningAt),
    startupPhasesMs: {
      node: ms(nodeReadyAt),
      modules: ms(modulesLoadedAt - nodeReadyAt),
      app: ms(appBuiltAt - modulesLoadedAt),
      server: ms(serverBuiltAt - appBuiltAt),
      listen: ms(listeningAt - serverBuiltAt),
    },
  });
});
