import http from 'node:http';
import net from 'node:net';
import { errorName } from '../errors';
import type { Lifecycle } from '../lifecycle';
import type { Logger } from '../logger';
import type { ProcessFault } from '../metrics';
import type { Connections } from './connections';

/** Exit status of a drain caused by a fault rather than a signal. */
export const EXIT_FAULT = 1;
/** Longest the drain waits for clients (pools, agents) to be released before the exit. */
export const RELEASE_TIMEOUT_MS = 2000;
const SIGNAL_NUMBERS: Readonly<Record<string, number>> = { SIGINT: 2, SIGTERM: 15 };

export interface ShutdownOptions {
  server: http.Server;
  /** The server's connections: closed by themselves during the drain, never cut mid-request. */
  connections: Connections;
  lifecycle: Lifecycle;
  logger: Logger;
  /** Longest the drain waits for requests and work in flight. */
  timeoutMs: number;
  observeFault: (kind: ProcessFault) => void;
  /** Releases clients (sockets, pools) once requests and work are done, before the exit. */
  release: () => void | Promise<void>;
  /** Ends the process; process.exit outside tests. */
  exit: (code: number) => void;
  now?: () => number;
}

/**
 * Stops the process without losing accepted work or a request already sent: readiness fails at
 * once, the listener stops accepting, every answer from then on (those being prepared too) carries
 * `Connection: close`, idle connections close after a grace, and the process exits once nothing is
 * in flight and every connection has closed, or the timeout has passed. Clients are released
 * last. A second signal exits at once.
 */
export class Shutdown {
  private drain: Promise<void> | undefined;
  private exitCode = 0;

  constructor(private readonly options: ShutdownOptions) {}

  /** For SIGTERM and SIGINT. */
  readonly onSignal = (signal: NodeJS.Signals): void => {
    if (this.drain !== undefined) {
      this.options.logger.warn('second signal: exiting at once', { signal });
      this.options.exit(128 + (SIGNAL_NUMBERS[signal] ?? 0));
      return;
    }
    this.start(`signal ${signal}`);
  };

  /** For unhandledRejection and uncaughtException: logged, counted, then the same drain. */
  readonly onFault = (kind: ProcessFault, error: unknown): void => {
    // The name only: a message may carry what must not be logged.
    this.options.logger.error('fault outside a request', { kind, error: errorName(error) });
    this.options.observeFault(kind);
    this.exitCode = EXIT_FAULT;
    this.start(kind);
  };

  private start(reason: string): void {
    this.drain ??= this.run(reason);
  }

  private async run(reason: string): Promise<void> {
    const { server, connections, lifecycle, logger, timeoutMs } = this.options;
    const now = this.options.now ?? (() => performance.now());
    const started = now();
    lifecycle.beginDrain();
    connections.beginDrain();
    logger.info('drain started', {
      reason,
      ...lifecycle.inFlight(),
      connections: connections.size,
      timeoutMs,
    });
    // net.Server's close stops accepting only: http.Server's would also cut idle keep-alive
    // connections (Node ≥ 19), on which a proxy may be sending a request right now.
    net.Server.prototype.close.call(server);
    const idle = await lifecycle.idle(timeoutMs);
    const closed = await connections.allClosed(Math.max(0, timeoutMs - (now() - started)));
    const left = lifecycle.inFlight();
    const connectionsCut = connections.size;
    server.closeAllConnections();
    let timer: NodeJS.Timeout | undefined;
    const released = await Promise.race([
      Promise.resolve()
        .then(this.options.release)
        .then(
          () => true,
          (error: unknown) => {
            logger.warn('releasing clients failed', { error: errorName(error) });
            return true;
          },
        ),
      new Promise<false>((resolve) => (timer = setTimeout(resolve, RELEASE_TIMEOUT_MS, false))),
    ]);
    clearTimeout(timer);
    if (!released) logger.warn('releasing clients timed out', { timeoutMs: RELEASE_TIMEOUT_MS });
    logger.info('drain finished', {
      reason,
      durationMs: Math.round(now() - started),
      drained: idle && closed,
      requestsAbandoned: left.requests,
      workAbandoned: left.work,
      connectionsCut,
      exitCode: this.exitCode,
    });
    this.options.exit(this.exitCode);
  }
}
