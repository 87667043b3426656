// The image's entry: the `coffeebuddy` function through the one request pipeline (createServer),
// with signals and faults outside a request draining the process.
import { startApp } from './app';
import { createServer } from './server';

const app = startApp();
const { settings, logger } = app;
const { server, shutdown } = createServer(app);

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
