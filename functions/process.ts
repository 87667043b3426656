import { startApp, type CreateAppOptions } from './app';
import { createServer } from './server';

export interface ProcessOptions extends Pick<CreateAppOptions, 'slackHandlers'> {
  /** When the entry's modules were loaded (performance.now()), for the start-up phases. */
  modulesLoadedAt?: number;
}

/**
 * Runs this process as CoffeeBuddy: the app from the environment (exit 78 on bad settings), its
 * pipeline listening on PORT, SIGTERM/SIGINT and faults outside a request draining it, and one
 * `listening` line with the start-up phases.
 */
export function serveProcess(options: ProcessOptions = {}): void {
  const modulesLoadedAt = options.modulesLoadedAt ?? performance.now();
  const app = startApp(
    options.slackHandlers === undefined ? {} : { slackHandlers: options.slackHandlers },
  );
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
  const host = settings.LISTEN_HOST === '' ? undefined : settings.LISTEN_HOST;
  server.listen(settings.PORT, host, () => {
    const listeningAt = performance.now();
    const ms = (value: number) => Math.round(value * 10) / 10;
    const nodeReadyAt = performance.nodeTiming.bootstrapComplete;
    logger.info('listening', {
      port: settings.PORT,
      host: settings.LISTEN_HOST || 'every interface',
      function: app.target,
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
}
