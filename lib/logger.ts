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

/** Writes one line; `urgent` for a warning or an error, which a batching sink writes at once. */
export type LogSink = (line: string, urgent?: boolean) => void;

/** Most bytes of log lines held before they are written (one access-log line is ~300 bytes). */
const MAX_BATCH_BYTES = 64 * 1024;
const NEWLINE = 0x0a;

/**
 * A sink that writes the lines of one turn of the event loop together, in order: one write a turn
 * rather than one a line (process.stdout blocks on a pipe or file, a system call each time).
 * Held lines are written at the next turn, by flush(), at once when they fill maxBytes or before a
 * line that would not fit, and at once with an urgent line (a warning or an error: out before
 * whatever follows it, an answer or a SIGKILL). A line longer than maxBytes is written alone.
 *
 * Lines are held as UTF-8 in one buffer outside V8's heap, copied in as they come: a line is
 * garbage once copied. Held as strings, the lines of a busy turn were alive at every young-
 * generation collection in it, about a fifth of what survived them, and V8 grows the young
 * generation (memory the process keeps) with what survives.
 */
export function batchedSink(
  write: (bytes: Buffer) => void,
  maxBytes = MAX_BATCH_BYTES,
): { sink: LogSink; flush: () => void } {
  const held = Buffer.allocUnsafeSlow(maxBytes);
  let used = 0;
  let scheduled = false;
  const flush = (): void => {
    scheduled = false;
    if (used === 0) return;
    // A copy: the writer may keep what it is given (a socket's queue) while `held` is reused.
    const bytes = Buffer.from(held.subarray(0, used));
    used = 0;
    write(bytes);
  };
  const sink: LogSink = (line, urgent = false) => {
    const length = Buffer.byteLength(line) + 1;
    if (used + length > maxBytes) flush();
    // Stryker disable next-line EqualityOperator: a line of exactly maxBytes is written at once either way, alone
    if (length > maxBytes) {
      write(Buffer.from(`${line}\n`));
      return;
    }
    used += held.write(line, used);
    held[used] = NEWLINE;
    used += 1;
    if (urgent || used === maxBytes) flush();
    else if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };
  return { sink, flush };
}

let stdoutBatch: ReturnType<typeof batchedSink> | undefined;
/** The process's stdout, batched; what is held is written when the process exits. */
const stdout: LogSink = (line, urgent) => {
  if (stdoutBatch === undefined) {
    const batch = batchedSink((bytes) => process.stdout.write(bytes));
    process.on('exit', batch.flush);
    stdoutBatch = batch;
  }
  stdoutBatch.sink(line, urgent);
};

let lastMs = Number.NaN;
// Stryker disable next-line StringLiteral: never read, no millisecond is NaN
let lastTime = '';

/**
 * The time of a log line, ISO 8601 to the millisecond: formatted once a millisecond, since under
 * load many lines share one and formatting a Date costs more than the rest of the line.
 */
function timeNow(): string {
  const now = Date.now();
  // Stryker disable next-line ConditionalExpression,EqualityOperator,BlockStatement: formatting every time gives the same text, only slower
  if (now !== lastMs) {
    lastMs = now;
    lastTime = new Date(now).toISOString();
  }
  return lastTime;
}

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
        time: timeNow(),
        level: entryLevel,
        msg: message,
        ...currentContext(),
        ...fields,
      });
      sink(
        redactor === undefined ? line : redactor.redact(line),
        SEVERITY[entryLevel] >= SEVERITY.warn,
      );
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
