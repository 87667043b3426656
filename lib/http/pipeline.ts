import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { errorName } from '../errors';
import type { Logger } from '../logger';
import { runInContext, type RequestContext, type RequestContexts } from '../request-context';
import { hasBody, readBody, ReadDeadlines } from './body';
import type { Connections } from './connections';
import { sendJson } from './respond';
import {
  UNMATCHED_ROUTE,
  type Refusal,
  type Route,
  type RouteRequest,
  type Router,
} from './router';

/**
 * After refusing a body, the rest of it is read and discarded for up to this long (or until the
 * client has sent it all) before the socket closes: closing with unread bytes makes the kernel
 * send a reset, which can destroy the answer before the client reads it.
 */
export const LINGER_MS = 2000;
const LINGER_MAX_BYTES = 64 * 1024 * 1024;
/**
 * Longest a body may take to arrive once its headers have: Kong buffers a request before it sends
 * it on, so a body that trickles in for longer is holding the connection, not uploading.
 */
export const BODY_READ_TIMEOUT_MS = 10_000;
/**
 * Most requests answered at once on one connection. Proxies do not pipeline (queue-proxy never
 * does); a client that pipelines past this without reading its answers is refused, so that
 * answers it will not read cannot pile up in memory.
 */
export const MAX_IN_FLIGHT_PER_CONNECTION = 16;

/** Told of every answered request, with the context of the request it answered. */
export type RequestObserver = (
  method: string,
  route: string,
  status: number,
  seconds: number,
  context: RequestContext,
) => void;

export interface PipelineOptions {
  router: Router;
  /**
   * functions-framework's Express app, for routes whose body it parses; asked for on the first
   * such request, so that a process serving none never builds it.
   */
  framework: () => RequestListener;
  /** The largest body of a route that does not set its own. */
  defaultMaxBodyBytes: number;
  /** Each request's id and trace id. */
  contexts: RequestContexts;
  observe: RequestObserver;
  /** Counts requests in flight per connection, for the lifecycle and the drain. */
  connections: Connections;
  logger: Logger;
}

/**
 * Every error functions-framework's body parsers (body-parser, raw-body, qs) can raise, by its
 * `type`, as a 4xx answer: never the parser's message, which may quote the body.
 */
export const BODY_ERRORS: Readonly<Record<string, Refusal>> = {
  'entity.parse.failed': { status: 400, error: 'malformed body' },
  'entity.verify.failed': { status: 400, error: 'malformed body' },
  'entity.too.large': { status: 413, error: 'request too large' },
  'parameters.too.many': { status: 413, error: 'too many parameters' },
  'querystring.parse.rangeError': { status: 413, error: 'form nested too deeply' },
  'charset.unsupported': { status: 415, error: 'unsupported charset' },
  'encoding.unsupported': { status: 415, error: 'unsupported content encoding' },
  'request.aborted': { status: 400, error: 'request aborted' },
  'request.size.invalid': { status: 400, error: 'request size did not match content length' },
  'stream.encoding.set': { status: 400, error: 'malformed body' },
  'stream.not.readable': { status: 400, error: 'malformed body' },
};

const INTERNAL_ERROR: Refusal = { status: 500, error: 'internal error' };
const TOO_LARGE: Refusal = { status: 413, error: 'request too large' };
const TOO_SLOW: Refusal = { status: 408, error: 'request timeout' };
const COMPRESSED: Refusal = { status: 415, error: 'unsupported content encoding' };
const TRANSFER_CODED: Refusal = { status: 415, error: 'unsupported transfer encoding' };
const PIPELINED: Refusal = { status: 429, error: 'too many requests on one connection' };

const pathOf = (url: string | undefined): string => {
  // Stryker disable next-line StringLiteral: a server's request always has a url
  const value = url ?? '/';
  const query = value.indexOf('?');
  // Stryker disable next-line EqualityOperator: Node refuses a request target starting with '?' (400)
  return query < 0 ? value : value.slice(0, query);
};

/**
 * Reads and discards what the client still sends, then closes: replaces the socket's
 * destroySoon(), which Node's server calls once an answer with `Connection: close` is written.
 */
function lingerBeforeClose(socket: Socket): void {
  socket.destroySoon = () => {
    let discarded = 0;
    const close = () => {
      clearTimeout(timer);
      socket.destroy();
    };
    const timer = setTimeout(close, LINGER_MS);
    timer.unref();
    socket.on('data', (chunk: Buffer) => {
      discarded += chunk.length;
      // Stryker disable next-line EqualityOperator: one byte either way of 64 MiB
      if (discarded > LINGER_MAX_BYTES) close();
    });
    // Stryker disable next-line StringLiteral: Node closes a socket ended both ways by itself; this clears the timer sooner
    socket.once('end', close);
    socket.end();
    socket.resume();
  };
}

/**
 * Starts recording a request: its context (id and trace id), the id header on the answer, and one
 * observation (metrics, access log) when the answer is sent, under the route label `route`.
 */
export function recordRequest(
  req: IncomingMessage,
  res: ServerResponse,
  route: string,
  contexts: RequestContexts,
  observe: RequestObserver,
): RequestContext {
  const started = process.hrtime.bigint();
  const context = contexts.of(req);
  res.setHeader(contexts.headerName, context.requestId);
  // A response finishes once: `on`, without the wrapper `once` builds for every request.
  res.on('finish', () => {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    // Stryker disable next-line StringLiteral: a server's request always has a method
    observe(req.method ?? 'GET', route, res.statusCode, seconds, context);
  });
  return context;
}

/**
 * CoffeeBuddy's request pipeline, the server's 'request' listener. For each request, once: count it
 * in flight, give it its context and id, time and record its answer. Then, before any body byte is
 * read: route it by path (404, 405), refuse compressed bodies (415) and bodies over the route's
 * limit (413). Then the body, as the route says (see BodyHandling): nothing is parsed before the
 * route's handler has seen the raw bytes, a route that takes no body never parses one, and only a
 * route that asks for a parsed body goes through functions-framework's Express app.
 */
export class Pipeline {
  /**
   * Connections answered with `Connection: close` by a refusal: requests parsed behind it are
   * never run, since their answers could not be sent.
   */
  private readonly closing = new WeakSet<Socket>();
  private readonly bodyDeadlines = new ReadDeadlines(BODY_READ_TIMEOUT_MS);

  constructor(private readonly options: PipelineOptions) {}

  /** The server's 'request' listener. */
  readonly listener: RequestListener = (req, res) => {
    this.handle(req, res, false);
  };

  /** For 'checkContinue': a client waiting for 100 Continue is told to go on only if accepted. */
  readonly continueListener: RequestListener = (req, res) => {
    this.handle(req, res, true);
  };

  /**
   * Express error middleware (four parameters), registered after the function: body-parsing and
   * other failures become JSON without the parser's message, logged once. The request was
   * recorded when it arrived, so the answer is counted as every other.
   */
  readonly errorHandler = (
    error: unknown,
    req: IncomingMessage,
    res: ServerResponse,
    // Express tells error middleware by its four parameters; nothing is passed on.
    _next: (error?: unknown) => void,
  ): void => {
    const type = (error as { type?: unknown } | null)?.type;
    const known = typeof type === 'string' ? BODY_ERRORS[type] : undefined;
    if (res.headersSent) return;
    const refusal = known ?? INTERNAL_ERROR;
    const route = this.options.router.routeFor(pathOf(req.url));
    this.logRefusal(req, route, refusal.status, typeof type === 'string' ? type : 'internal error');
    sendJson(res, refusal.status, { error: refusal.error });
  };

  private handle(req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): void {
    const { router, contexts, observe, connections } = this.options;
    if (this.closing.has(req.socket)) return;
    connections.requestStarted(req, res);
    const route = router.routeFor(pathOf(req.url));
    const context = recordRequest(req, res, route?.path ?? UNMATCHED_ROUTE, contexts, observe);
    runInContext(context, () => {
      const unrouted = router.refusal(route, req.method);
      if (unrouted !== undefined || route === undefined) {
        // 404 and 405 are the access log's to tell, not a warning's.
        this.answerRefusal(req, res, unrouted ?? INTERNAL_ERROR);
        return;
      }
      const refusal =
        connections.inFlightOn(req.socket) > MAX_IN_FLIGHT_PER_CONNECTION
          ? PIPELINED
          : this.bodyRefusal(req, route);
      if (refusal !== undefined) {
        this.refuse(req, res, route, refusal);
        return;
      }
      // Stryker disable next-line BlockStatement: the fast path; without it, the same a microtask later
      if (route.admit === undefined) {
        this.proceed(req, res, route, expectsContinue);
        return;
      }
      void Promise.resolve()
        .then(() => route.admit?.(req, res))
        .then(
          (admission) => {
            runInContext(context, () => {
              if (admission === undefined) this.proceed(req, res, route, expectsContinue);
              else this.refuse(req, res, route, admission);
            });
          },
          (error: unknown) => {
            runInContext(context, () => {
              this.options.logger.error('request admission failed', {
                route: route.path,
                error: errorName(error),
              });
              this.answerRefusal(req, res, INTERNAL_ERROR);
            });
          },
        );
    });
  }

  /** A request the route admitted: its body read as the route says, then its handler. */
  private proceed(
    req: IncomingMessage,
    res: ServerResponse,
    route: Route,
    expectsContinue: boolean,
  ): void {
    const { router } = this.options;
    if (expectsContinue) res.writeContinue();
    const body = route.body;
    if (body === 'parsed') {
      // Counted whatever its framing: a declared length within the limit never trips it.
      this.cutAtLimit(req, res, route);
      this.options.framework()(req, res);
      return;
    }
    if (!hasBody(req)) {
      void router.run(route, req, res);
      return;
    }
    // The callback runs in the request's context, as promise callbacks do in the context they were
    // registered in (here, the request's): whoever settles the read (the socket, the deadline).
    // Stryker disable next-line ConditionalExpression: keeping a `none` route's bytes costs memory only, never seen
    void readBody(req, this.limitOf(route), body === 'raw', this.bodyDeadlines).then((read) => {
      if (read.ok) {
        if (body === 'raw') (req as RouteRequest).rawBody = read.bytes;
        void router.run(route, req, res);
      } else if (read.reason !== 'aborted') {
        this.refuse(req, res, route, read.reason === 'timeout' ? TOO_SLOW : TOO_LARGE);
      }
      // aborted: the client is gone and the connection with it; nothing to answer.
    });
  }

  private limitOf(route: Route): number {
    return route.maxBodyBytes ?? this.options.defaultMaxBodyBytes;
  }

  /** Why a request's body is refused from its headers alone, if it is. */
  private bodyRefusal(req: IncomingMessage, route: Route): Refusal | undefined {
    const encoding = req.headers['content-encoding'];
    if (encoding !== undefined) {
      // Node's parser has trimmed the value's surrounding whitespace already.
      const coding = encoding.toLowerCase();
      if (coding !== '' && coding !== 'identity') return COMPRESSED;
    }
    const transfer = req.headers['transfer-encoding'];
    if (transfer !== undefined && transfer.toLowerCase() !== 'chunked') return TRANSFER_CODED;
    if (Number(req.headers['content-length'] ?? 0) > this.limitOf(route)) return TOO_LARGE;
    return undefined;
  }

  /**
   * Counts a body as the framework's parser streams it (one of unknown length can only be bounded
   * so); past the limit, answers 413 and closes.
   */
  private cutAtLimit(req: IncomingMessage, res: ServerResponse, route: Route): void {
    const limit = this.limitOf(route);
    let received = 0;
    const count = (chunk: Buffer) => {
      received += chunk.length;
      if (received <= limit) return;
      // Nothing else may buffer what follows: the parser waiting for the body is cut off too.
      // Stryker disable next-line StringLiteral: memory only, and bounded: the framework's parser stops at its own limit
      req.removeAllListeners('data');
      req.resume();
      if (!res.headersSent) this.refuse(req, res, route, TOO_LARGE);
      else res.destroy();
    };
    req.on('data', count);
  }

  /**
   * Answers a refusal. When the body is still unread, the connection closes after the answer and
   * the rest of the body is drained first (lingerBeforeClose); otherwise the connection stays.
   */
  private refuse(
    req: IncomingMessage,
    res: ServerResponse,
    route: Route | undefined,
    refusal: Refusal,
  ): void {
    this.logRefusal(req, route, refusal.status, refusal.error);
    this.answerRefusal(req, res, refusal);
  }

  private answerRefusal(req: IncomingMessage, res: ServerResponse, refusal: Refusal): void {
    if ((hasBody(req) && !req.complete) || refusal === PIPELINED) {
      res.setHeader('Connection', 'close');
      this.closing.add(req.socket);
      lingerBeforeClose(req.socket);
    }
    sendJson(res, refusal.status, { error: refusal.error }, refusal.headers);
  }

  /**
   * One line saying why a request was refused, in the request's context: a refusal can come from a
   * socket's data event (a chunked body over the limit) or Express's error path, outside it.
   */
  private logRefusal(
    req: IncomingMessage,
    route: Route | undefined,
    status: number,
    reason: string,
  ): void {
    runInContext(this.options.contexts.of(req), () => {
      this.options.logger[status >= 500 ? 'error' : 'warn']('request refused', {
        method: req.method,
        route: route?.path ?? UNMATCHED_ROUTE,
        status,
        reason,
      });
    });
  }
}
