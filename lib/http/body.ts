import type { IncomingMessage } from 'node:http';

/** Whether a request carries a body at all (RFC 9112 §6.3): a length above 0, or chunks. */
export function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** How reading a body ended: its bytes, or why there are none. */
export type BodyRead =
  { ok: true; bytes: Buffer } | { ok: false; reason: 'too_large' | 'timeout' | 'aborted' };

/** A chunked body's first buffer; it doubles as bytes arrive, up to the limit. */
const FIRST_BUFFER_BYTES = 4096;

interface Deadline {
  /** performance.now() past which it has run out. */
  at: number;
  onTimeout: () => void;
}

/**
 * The deadlines of body reads in progress, all of one length, under one timer. A timer of each
 * read's own, armed and cleared on every request, cost about 3% of a signed command's CPU under
 * load (a CPU profile on Node 24: Node's timer list made and dropped each time). Deadlines of one
 * length run out in the order they were set, so only the oldest is timed; a cancelled one is
 * simply forgotten. The timer does not keep the process alive: a read in progress has a socket
 * that does.
 */
export class ReadDeadlines {
  /** In the order set, which is the order they run out. */
  private readonly pending = new Set<Deadline>();
  private timer: NodeJS.Timeout | undefined;

  constructor(readonly timeoutMs: number) {}

  /** Calls `onTimeout` once timeoutMs have passed, unless the returned function is called first. */
  start(onTimeout: () => void): () => void {
    const deadline = { at: performance.now() + this.timeoutMs, onTimeout };
    this.pending.add(deadline);
    this.timer ??= this.arm(this.timeoutMs);
    return () => {
      this.pending.delete(deadline);
    };
  }

  private arm(ms: number): NodeJS.Timeout {
    const timer = setTimeout(() => {
      this.expire();
    }, ms);
    timer.unref();
    return timer;
  }

  private expire(): void {
    this.timer = undefined;
    const now = performance.now();
    for (const deadline of this.pending) {
      if (deadline.at > now) {
        this.timer = this.arm(deadline.at - now);
        return;
      }
      this.pending.delete(deadline);
      deadline.onTimeout();
    }
  }
}

/**
 * Reads a request's body as raw bytes, at most `limitBytes`, within `deadlines`' time, nothing
 * parsed.
 * Bytes are copied into one buffer as they arrive (sized by Content-Length, or doubling for
 * chunks), so a body sent a byte a chunk costs its bytes, not a Buffer per chunk. Past the limit it
 * stops at once and answers `too_large`; past the deadline, `timeout` (a body trickled in to hold
 * the connection); the caller refuses and lets the rest drain. With `keep` false the bytes are
 * counted and dropped: a route that takes no body still lets one pass.
 */
export function readBody(
  req: IncomingMessage,
  limitBytes: number,
  keep: boolean,
  deadlines: ReadDeadlines,
): Promise<BodyRead> {
  return new Promise((resolve) => {
    const declared = Number(req.headers['content-length'] ?? Number.NaN);
    let buffer = keep
      ? Buffer.allocUnsafe(
          Number.isInteger(declared) ? declared : Math.min(FIRST_BUFFER_BYTES, limitBytes),
        )
      : undefined;
    let received = 0;
    const finish = (result: BodyRead) => {
      cancelDeadline();
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('aborted', onAborted);
      req.off('error', onAborted);
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      if (received + chunk.length > limitBytes) {
        finish({ ok: false, reason: 'too_large' });
        return;
      }
      if (buffer !== undefined) {
        if (received + chunk.length > buffer.length) {
          const grown = Buffer.allocUnsafe(
            Math.min(Math.max(buffer.length * 2, received + chunk.length), limitBytes),
          );
          buffer.copy(grown, 0, 0, received);
          buffer = grown;
        }
        chunk.copy(buffer, received);
      }
      received += chunk.length;
    };
    const onEnd = () => {
      finish({
        ok: true,
        bytes: buffer === undefined ? Buffer.alloc(0) : buffer.subarray(0, received),
      });
    };
    const onAborted = () => {
      finish({ ok: false, reason: 'aborted' });
    };
    const cancelDeadline = deadlines.start(() => {
      finish({ ok: false, reason: 'timeout' });
    });
    req.on('data', onData);
    req.on('end', onEnd);
    // A client gone mid-body raises both (Node 20 and 24): either alone ends the read.
    // Stryker disable next-line StringLiteral: equivalent while 'error' is listened to as well
    req.on('aborted', onAborted);
    // Stryker disable next-line StringLiteral: equivalent while 'aborted' is listened to as well
    req.on('error', onAborted);
  });
}
