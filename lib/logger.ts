import type { Redactor } from './redactor';
import { currentContext } from './request-context';

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

const SEVERITY: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type LogSink = (line: string) => void;

const stdout: LogSink = (line) => {
  process.stdout.write(`${line}\n`);
};

/**
 * A logger writing one JSON object a line, dropping entries below `level`. A line written while a
 * request is handled carries its `requestId` (and `traceId`), unless the fields name them. With a
 * redactor, every known secret is removed from each line before it is written.
 */
export function createLogger(level: LogLevel, sink: LogSink = stdout, redactor?: Redactor): Logger {
  const threshold = SEVERITY[level];
  const write =
    (entryLevel: LogLevel) =>
    (message: string, fields: Record<string, unknown> = {}): void => {
      if (SEVERITY[entryLevel] < threshold) return;
      const line = JSON.stringify({
        time: new Date().toISOString(),
        level: entryLevel,
        msg: message,
        ...currentContext(),
        ...fields,
      });
      sink(redactor === undefined ? line : redactor.redact(line));
    };
  return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') };
}

/** A logger that adds `fields` to every line it writes (a handler's event id, type and attempt). */
export function withFields(logger: Logger, bound: Record<string, unknown>): Logger {
  const write =
    (entryLevel: LogLevel) =>
    (message: string, fields: Record<string, unknown> = {}): void => {
      logger[entryLevel](message, { ...bound, ...fields });
    };
  return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') };
}
