import http from 'node:http';
import net from 'node:net';
import type { Lifecycle } from '../lifecycle';
import type { Logger } from '../logger';
import type { ProcessFault } from '../metrics';

/** Exit status of a drain caused by a fault rather than a signal. */
export const EXIT_FAULT = 1;
const SIGNAL_NUMBERS: Readonly<Record<string, number>> = { SIGINT: 2, SIGTERM: 15 };

export interface ShutdownOptions {
  server: http.Server;
  lifecycle: Lifecycle;
  logger: Logger;
  /** Longest the drain waits for requests and work in flight. */
  timeoutMs: number;
  observeFault: (kind: ProcessFault) => void;
  /** Ends the process; process.exit outside tests. */
  exit: (code: number) => void;
  now?: () => number;
}

/**
 * Stops the process without losing accepted work: readiness fails at once, the listener stops
 * accepting, requests still arriving on open keep-alive connections are answered with
 * `Connection: close`, and the process exits once nothing is in flight or the timeout has passed.
 * A second signal exits at once.
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
    const name = error instanceof Error ? error.name : typeof error;
    this.options.logger.error('fault outside a request', { kind, error: name });
    this.options.observeFault(kind);
    this.exitCode = EXIT_FAULT;
    this.start(kind);
  };

  private start(reason: string): void {
    this.drain ??= this.run(reason);
  }

  private async run(reason: string): Promise<void> {
    const { server, lifecycle, logger, timeoutMs } = this.options;
    const now = this.options.now ?? (() => performance.now());
    const started = now();
    lifecycle.beginDrain();
    const before = lifecycle.inFlight();
    logger.info('drain started', { reason, ...before, timeoutMs });
    // net.Server's close stops accepting only: http.Server's would also cut idle keep-alive
    // connections (Node ≥ 19), on which a proxy may be sending a request right now.
    net.Server.prototype.close.call(server);
    const drained = await lifecycle.idle(timeoutMs);
    const left = lifecycle.inFlight();
    server.closeAllConnections();
    logger.info('drain finished', {
      reason,
      durationMs: Math.round(now() - started),
      drained,
      requestsAbandoned: left.requests,
      workAbandoned: left.work,
      exitCode: this.exitCode,
    });
    this.options.exit(this.exitCode);
  }
}
