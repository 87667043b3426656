import type { HttpFunction, Request, Response } from '@google-cloud/functions-framework';
import { sendJson } from './respond';
import type { Logger } from '../logger';
import {
  currentContext,
  runInContext,
  type RequestContext,
  type RequestContexts,
} from '../request-context';

export const READ_METHODS = ['GET', 'HEAD'] as const;
/** The route label of requests no route matched: raw paths never become label values. */
export const UNMATCHED_ROUTE = 'unmatched';

/** One endpoint: the function name it is registered under, its path and allowed methods. */
export interface Route {
  name: string;
  path: string;
  methods: readonly string[];
  handler: HttpFunction;
  /** Largest request body the route takes, when it differs from the server's default. */
  maxBodyBytes?: number;
}

/** Told of every answered request, with the context of the request it answered. */
export type RequestObserver = (
  method: string,
  route: string,
  status: number,
  seconds: number,
  context: RequestContext,
) => void;

export interface RouterOptions {
  logger: Logger;
  /** Each request's id and trace id; the id is echoed in the response. */
  contexts: RequestContexts;
  observe?: RequestObserver;
}

/**
 * Sends each request to its route by exact path, answering 404 and 405 itself, timing every answer
 * and turning any failure of a handler into a 500 without internal details.
 */
export class Router {
  private readonly byPath: ReadonlyMap<string, Route>;

  constructor(
    routes: readonly Route[],
    private readonly options: RouterOptions,
  ) {
    this.byPath = new Map(routes.map((route) => [route.path, route]));
    if (this.byPath.size !== routes.length) throw new Error('two routes share a path');
  }

  /** The route serving `path`, by exact path. */
  routeFor(path: string): Route | undefined {
    return this.byPath.get(path);
  }

  /** Serves every route, chosen by path: the `coffeebuddy` entry. */
  readonly dispatch: HttpFunction = (req: Request, res: Response) =>
    this.handle(this.byPath.get(req.path), req, res);

  /** Serves one route on every path: a function deployed alone. */
  serve(route: Route): HttpFunction {
    return (req: Request, res: Response) => this.handle(route, req, res);
  }

  /**
   * Runs the route inside the request's context, so that every log line written on its behalf
   * (work after the answer too) carries the request id.
   */
  private handle(route: Route | undefined, req: Request, res: Response): void | Promise<void> {
    const started = process.hrtime.bigint();
    const { observe, contexts } = this.options;
    const context = contexts.of(req);
    // Behind the edge the id is already set; a function served alone sets it here.
    if (!res.hasHeader(contexts.headerName)) res.setHeader(contexts.headerName, context.requestId);
    if (observe !== undefined) {
      res.once('finish', () => {
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        observe(req.method, route?.path ?? UNMATCHED_ROUTE, res.statusCode, seconds, context);
      });
    }
    // Still inside the edge's run when no body was parsed on the way; otherwise enter it again.
    return currentContext() === context
      ? this.answer(route, req, res)
      : runInContext(context, () => this.answer(route, req, res));
  }

  /** Stays synchronous for synchronous handlers: probes are the hot path. */
  private answer(route: Route | undefined, req: Request, res: Response): void | Promise<void> {
    if (route === undefined) {
      sendJson(res, 404, { error: 'not found' });
      return;
    }
    if (!route.methods.includes(req.method)) {
      sendJson(res, 405, { error: 'method not allowed' }, { Allow: route.methods.join(', ') });
      return;
    }
    try {
      const result: unknown = route.handler(req, res);
      if (result instanceof Promise) {
        return result.then(undefined, (error: unknown) => {
          this.fail(route, res, error);
        });
      }
    } catch (error) {
      this.fail(route, res, error);
    }
    return undefined;
  }

  private fail(route: Route, res: Response, error: unknown): void {
    this.options.logger.error('request failed', {
      route: route.path,
      error: error instanceof Error ? `${error.name}: ${error.message}` : 'non-error thrown',
    });
    if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
  }
}
