import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Lifecycle } from '../lifecycle';
import type { Logger } from '../logger';
import { runInContext, type RequestContexts } from '../request-context';
import { sendJson } from './respond';
import type { RequestObserver } from './router';

/**
 * After refusing a body, the rest of it is read and discarded for up to this long (or until the
 * client has sent it all) before the socket closes: closing with unread bytes makes the kernel
 * send a reset, which can destroy the answer before the client reads it.
 */
const LINGER_MS = 2000;
const LINGER_MAX_BYTES = 64 * 1024 * 1024;

export interface EdgeOptions {
  /** Each request's id and trace id, shared with the router. */
  contexts: RequestContexts;
  /** The largest body the route at `path` takes. */
  limitFor: (path: string) => number;
  /** The route label for `path`: its template, or "unmatched". Never the raw path. */
  routeFor: (path: string) => string;
  observe: RequestObserver;
  lifecycle: Lifecycle;
  logger: Logger;
}

/** What a body-parsing failure becomes: never the parser's message, which may quote the body. */
const PARSE_FAILURES: Readonly<Record<string, { status: number; error: string }>> = {
  'entity.parse.failed': { status: 400, error: 'malformed body' },
  'entity.too.large': { status: 413, error: 'request too large' },
  'parameters.too.many': { status: 413, error: 'too many parameters' },
  'charset.unsupported': { status: 415, error: 'unsupported charset' },
  'encoding.unsupported': { status: 415, error: 'unsupported content encoding' },
  'request.aborted': { status: 400, error: 'request aborted' },
  'request.size.invalid': { status: 400, error: 'request size did not match content length' },
};

const pathOf = (url: string | undefined): string => {
  const value = url ?? '/';
  const query = value.indexOf('?');
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
      if (discarded > LINGER_MAX_BYTES) close();
    });
    socket.once('end', close);
    socket.end();
    socket.resume();
  };
}

/**
 * CoffeeBuddy's HTTP edge, in front of functions-framework's Express app: refuses compressed
 * bodies and bodies over the route's limit before a byte of them is read, answers body-parsing
 * failures in JSON, counts every request it answers itself, and keeps the lifecycle's count of
 * requests in flight. While draining, every answer carries `Connection: close`.
 */
export class Edge {
  private readonly started = new WeakMap<IncomingMessage, bigint>();

  constructor(private readonly options: EdgeOptions) {}

  /** The server's 'request' listener: checks, then hands the request to `next`. */
  handler(next: RequestListener): RequestListener {
    return (req, res) => {
      const done = this.options.lifecycle.requestStarted();
      res.once('close', done);
      this.started.set(req, process.hrtime.bigint());
      const { contexts } = this.options;
      const context = contexts.of(req);
      res.setHeader(contexts.headerName, context.requestId);
      if (this.options.lifecycle.draining) res.setHeader('Connection', 'close');
      runInContext(context, () => {
        const path = pathOf(req.url);
        const refusal = this.refusal(req, path);
        if (refusal !== undefined) {
          this.refuse(req, res, path, refusal.status, refusal.error);
          return;
        }
        if (req.headers['content-length'] === undefined && req.headers['transfer-encoding']) {
          this.countChunked(req, res, path);
        }
        next(req, res);
      });
    };
  }

  /**
   * For 'checkContinue': a client that waits for 100 Continue is refused before it sends the body,
   * or told to go on.
   */
  continueHandler(next: RequestListener): RequestListener {
    const handle = this.handler(next);
    return (req, res) => {
      if (this.refusal(req, pathOf(req.url)) === undefined) res.writeContinue();
      handle(req, res);
    };
  }

  /**
   * Express error middleware (four parameters), registered after the function: body-parsing and
   * other failures become JSON without the parser's message, logged once and counted.
   */
  readonly errorHandler = (
    error: unknown,
    req: IncomingMessage,
    res: ServerResponse,
    // Express tells error middleware by its four parameters; nothing is passed on.
    _next: (error?: unknown) => void,
  ): void => {
    const type = (error as { type?: unknown } | null)?.type;
    const known = typeof type === 'string' ? PARSE_FAILURES[type] : undefined;
    const status = known?.status ?? 500;
    const path = pathOf(req.url);
    if (res.headersSent) return;
    this.logRefusal(req, path, status, typeof type === 'string' ? type : 'internal error');
    this.answer(req, res, path, status, known?.error ?? 'internal error');
  };

  /** Why a request is refused from its headers alone, if it is. */
  private refusal(
    req: IncomingMessage,
    path: string,
  ): { status: number; error: string } | undefined {
    const encoding = req.headers['content-encoding']?.trim().toLowerCase();
    if (encoding !== undefined && encoding !== '' && encoding !== 'identity') {
      return { status: 415, error: 'unsupported content encoding' };
    }
    const length = req.headers['content-length'];
    if (length !== undefined && Number(length) > this.options.limitFor(path)) {
      return { status: 413, error: 'request too large' };
    }
    return undefined;
  }

  /** Counts a body of unknown length as it streams; past the limit, answers 413 and closes. */
  private countChunked(req: IncomingMessage, res: ServerResponse, path: string): void {
    const limit = this.options.limitFor(path);
    let received = 0;
    const count = (chunk: Buffer) => {
      received += chunk.length;
      if (received <= limit) return;
      // Nothing else may buffer what follows: the parser waiting for the body is cut off too.
      req.removeAllListeners('data');
      req.resume();
      if (!res.headersSent) this.refuse(req, res, path, 413, 'request too large');
      else res.destroy();
    };
    req.on('data', count);
  }

  private refuse(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    status: number,
    error: string,
  ): void {
    this.logRefusal(req, path, status, error);
    res.setHeader('Connection', 'close');
    lingerBeforeClose(req.socket);
    this.answer(req, res, path, status, error);
  }

  /**
   * One line saying why a request was refused, in the request's context: a refusal can come from
   * a socket's data event (a chunked body over the limit) or Express's error path, outside it.
   */
  private logRefusal(req: IncomingMessage, path: string, status: number, reason: string): void {
    runInContext(this.options.contexts.of(req), () => {
      this.options.logger[status >= 500 ? 'error' : 'warn']('request refused', {
        method: req.method,
        route: this.options.routeFor(path),
        status,
        reason,
      });
    });
  }

  private answer(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    status: number,
    error: string,
  ): void {
    const started = this.started.get(req) ?? process.hrtime.bigint();
    const context = this.options.contexts.of(req);
    res.once('finish', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const route = this.options.routeFor(path);
      this.options.observe(req.method ?? 'GET', route, status, seconds, context);
    });
    sendJson(res, status, { error });
  }
}
