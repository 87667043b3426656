import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Lifecycle } from '../lifecycle';

/**
 * While draining, a connection with no request in flight is closed once no byte has arrived on it
 * for this long: a request the client sent just before the signal is still on its way.
 */
export const DRAIN_IDLE_GRACE_MS = 1000;
/**
 * While draining, a connection with no request in flight is closed after this long whatever
 * arrives on it: a request whose head trickles in a byte at a time cannot hold the drain.
 */
export const DRAIN_IDLE_MAX_MS = 5000;

/**
 * A connection's responses not yet closed (more than one only when pipelined), each with what ends
 * its count, in slots that are reused. Not a Map: a Map emptied by delete() shrinks its table, so
 * every request made it a new table twice (set, then delete), each kept by the connection and so
 * carried through V8's young-generation collections.
 */
class OpenResponses {
  private readonly responses: (ServerResponse | undefined)[] = [];
  private readonly ends: ((() => void) | undefined)[] = [];
  size = 0;

  add(res: ServerResponse, end: () => void): void {
    this.responses[this.size] = res;
    this.ends[this.size] = end;
    this.size += 1;
  }

  /** Forgets `res`, if open; the last slot fills its place. */
  remove(res: ServerResponse): void {
    const at = this.responses.indexOf(res);
    // Stryker disable next-line ConditionalExpression,BlockStatement: a response is asked for again only after its connection closed, when the list is dropped
    if (at < 0) return;
    const last = this.size - 1;
    this.responses[at] = this.responses[last];
    this.ends[at] = this.ends[last];
    // Stryker disable next-line all: memory only, a slot past `size` is never read while the connection is open
    this.responses[last] = undefined;
    // Stryker disable next-line all: memory only, as above
    this.ends[last] = undefined;
    this.size = last;
  }

  /** The open responses, as they are now. */
  all(): ServerResponse[] {
    return this.responses.slice(0, this.size) as ServerResponse[];
  }

  /** Ends every open response's count (each end removes its response). */
  endAll(): void {
    for (const end of this.ends.slice(0, this.size) as (() => void)[]) end();
  }
}

interface Tracked {
  open: OpenResponses;
  /** While draining: when a byte last arrived, to tell an idle connection from a busy one. */
  lastDataAt: number;
  /** When the last request on it ended (0 before any). */
  idleSince: number;
}

/**
 * Every open connection and the requests in flight on each; tells the lifecycle when a request
 * starts and ends (answered, aborted, or its connection gone, whichever comes first). The drain
 * never cuts a connection that may have a request in transit: each answer from then on carries
 * `Connection: close` (answers already being prepared at the signal too), and a connection is
 * closed by itself only after such an answer, or after DRAIN_IDLE_GRACE_MS with nothing on it.
 */
export class Connections {
  private readonly sockets = new Map<Socket, Tracked>();
  private readonly emptyWaiters: (() => void)[] = [];
  private draining = false;

  constructor(
    private readonly lifecycle: Lifecycle,
    private readonly idleGraceMs = DRAIN_IDLE_GRACE_MS,
    private readonly idleMaxMs = DRAIN_IDLE_MAX_MS,
  ) {}

  /** Tracks the connections `server` accepts. */
  attach(server: Server): void {
    server.on('connection', (socket: Socket) => {
      const tracked: Tracked = { open: new OpenResponses(), lastDataAt: 0, idleSince: 0 };
      this.sockets.set(socket, tracked);
      if (this.draining) this.watchIdle(socket, tracked);
      socket.once('close', () => {
        this.sockets.delete(socket);
        // Requests whose connection is gone are no longer in flight, answered or not.
        tracked.open.endAll();
        if (this.sockets.size === 0) for (const wake of this.emptyWaiters.splice(0)) wake();
      });
    });
  }

  /** Counts a request in flight until it is answered, aborted, or its connection closes. */
  requestStarted(req: IncomingMessage, res: ServerResponse): void {
    const tracked = this.sockets.get(req.socket);
    // Its connection already closed (a request parsed behind one that closed it): never answered.
    if (tracked === undefined) return;
    const done = this.lifecycle.requestStarted();
    const end = () => {
      tracked.open.remove(res);
      tracked.idleSince = performance.now();
      done();
    };
    tracked.open.add(res, end);
    // 'close' follows every answer and every abort; a response queued behind a closing pipelined
    // one may never see it (Node 20), so the connection's own close ends it too.
    // A response closes once: `on`, without the wrapper `once` builds for every request.
    res.on('close', end);
    if (this.draining) res.setHeader('Connection', 'close');
  }

  /**
   * From now on every answer closes its connection, answers being prepared included; idle
   * connections close after the grace.
   */
  beginDrain(): void {
    this.draining = true;
    for (const [socket, tracked] of this.sockets) {
      for (const res of tracked.open.all()) {
        if (!res.headersSent) res.setHeader('Connection', 'close');
      }
      this.watchIdle(socket, tracked);
    }
  }

  /** Requests in flight on the connection `socket`: more than one only when pipelined. */
  inFlightOn(socket: Socket): number {
    return this.sockets.get(socket)?.open.size ?? 0;
  }

  /** Resolves once no connection is open, or false after timeoutMs. */
  allClosed(timeoutMs: number): Promise<boolean> {
    if (this.sockets.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        resolve(false);
      }, timeoutMs);
      this.emptyWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  get size(): number {
    return this.sockets.size;
  }

  /**
   * Closes the connection once it has had no request in flight and no byte for the grace. A timer
   * runs before the loop reads its sockets, so a starved loop would see a request already waiting
   * in the socket as silence: the close is decided again after one turn of I/O has read it.
   */
  private watchIdle(socket: Socket, tracked: Tracked): void {
    const watchedAt = performance.now();
    tracked.lastDataAt = watchedAt;
    socket.on('data', () => {
      tracked.lastDataAt = performance.now();
    });
    // Idle since the last answer: a request in flight is answered with close instead.
    // Times are fractional milliseconds: `>=` and `>` differ only at one instant.
    const idle = (now: number) =>
      tracked.open.size === 0 &&
      // Stryker disable next-line EqualityOperator: the same but at one instant (see above)
      (now - tracked.lastDataAt >= this.idleGraceMs ||
        // Stryker disable next-line EqualityOperator: the same but at one instant (see above)
        now - Math.max(watchedAt, tracked.idleSince) >= this.idleMaxMs);
    // When the next check runs is timing only: a check closes nothing that is not idle.
    const later = () => {
      // Stryker disable next-line ArithmeticOperator: the next check's time only (see above)
      const quietMs = performance.now() - tracked.lastDataAt;
      // Stryker disable next-line ArithmeticOperator,MethodExpression: the next check's time only
      setTimeout(check, Math.max(this.idleGraceMs - quietMs, 10)).unref();
    };
    const check = () => {
      // Stryker disable next-line ConditionalExpression: a closed socket is idle; destroy() again is a no-op
      if (socket.destroyed) return;
      // Stryker disable next-line ConditionalExpression,BlockStatement: the check after I/O decides alike
      if (!idle(performance.now())) {
        later();
        return;
      }
      setImmediate(() => {
        // Stryker disable next-line ConditionalExpression: a closed socket is idle; destroy() again is a no-op
        if (socket.destroyed) return;
        if (idle(performance.now())) socket.destroy();
        else later();
      });
    };
    check();
  }
}
