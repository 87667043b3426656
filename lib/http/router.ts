import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HttpFunction, Request, Response } from '@google-cloud/functions-framework';
import { errorName } from '../errors';
import type { Logger } from '../logger';
import { sendJson } from './respond';

export const READ_METHODS = ['GET', 'HEAD'] as const;
/** The route label of requests no route matched: raw paths never become label values. */
export const UNMATCHED_ROUTE = 'unmatched';

/**
 * What the pipeline does with a route's request body before the handler runs:
 * - `none`: the route takes none; one sent anyway is read (within the limit) and dropped unparsed;
 * - `raw`: read whole (within the limit) into `req.rawBody` and never parsed on the way, so the
 *   handler can authenticate the bytes before it parses them (Slack);
 * - `parsed`: functions-framework's Express app parses it into `req.body`, as the framework does.
 * Only `parsed` routes go through the framework's Express app behind the pipeline: for the others
 * it would add nothing but cost. Served alone (`--target`), every route goes through it.
 */
export type BodyHandling = 'none' | 'raw' | 'parsed';

/**
 * A request as every handler may read it, served behind the pipeline or by the framework alone:
 * Node's request, the raw body of a `raw` route, the parsed body of a `parsed` one.
 */
export type RouteRequest = IncomingMessage & { rawBody?: Buffer; body?: unknown };

/** A route's handler: Node's request and response, nothing Express adds. */
export type RouteHandler = (req: RouteRequest, res: ServerResponse) => void | Promise<void>;

/** One endpoint: the function name it is registered under, its path and allowed methods. */
export interface Route {
  name: string;
  path: string;
  methods: readonly string[];
  handler: RouteHandler;
  /** Largest request body the route takes, when it differs from the server's default. */
  maxBodyBytes?: number;
  /** `none` unless said. */
  body?: BodyHandling;
  /**
   * Asked behind the pipeline before a byte of the body is read (who sent it, whether there is
   * room for it): a refusal is answered instead of the handler. What it holds for the request's
   * life it gives back on the response's 'close'. Served alone (`--target`), the framework has read
   * the body before any of this code runs, so it is not asked there.
   */
  admit?: (req: IncomingMessage, res: ServerResponse) => Admission | Promise<Admission>;
}

/** A route's verdict before the body: undefined lets the request on. */
export type Admission = Refusal | undefined;

/** An answer given instead of the handler's. */
export interface Refusal {
  status: number;
  error: string;
  headers?: Readonly<Record<string, string>>;
}

const NOT_FOUND: Refusal = { status: 404, error: 'not found' };

/**
 * Finds the route of a request by exact path (a router of one route serves it on every path, as a
 * function deployed alone) and runs its handler, turning any failure into a 500 without internal
 * details. It neither times nor records: the pipeline does, once per request.
 */
export class Router {
  private readonly byPath: ReadonlyMap<string, Route>;
  private readonly only: Route | undefined;
  private readonly refusals = new Map<Route, Refusal>();

  constructor(
    routes: readonly Route[],
    private readonly logger: Logger,
  ) {
    this.byPath = new Map(routes.map((route) => [route.path, route]));
    if (this.byPath.size !== routes.length) throw new Error('two routes share a path');
    this.only = routes.length === 1 ? routes[0] : undefined;
    for (const route of routes) {
      const allow = route.methods.join(', ');
      this.refusals.set(route, {
        status: 405,
        error: 'method not allowed',
        headers: { Allow: allow },
      });
    }
  }

  /** The route serving `path`. */
  routeFor(path: string): Route | undefined {
    return this.only ?? this.byPath.get(path);
  }

  /** Why `route` does not take this method, or that there is no route; undefined when it does. */
  refusal(route: Route | undefined, method: string | undefined): Refusal | undefined {
    if (route === undefined) return NOT_FOUND;
    // Stryker disable next-line StringLiteral: no route lists '' (nor any other made-up method) among its methods
    return route.methods.includes(method ?? '') ? undefined : this.refusals.get(route);
  }

  /** As a function for functions-framework: answers from the request's route. */
  readonly invoke: HttpFunction = (req: Request, res: Response) => {
    const route = this.routeFor(req.path);
    const refusal = this.refusal(route, req.method);
    if (refusal !== undefined || route === undefined) {
      const { status, error, headers } = refusal ?? NOT_FOUND;
      sendJson(res, status, { error }, headers);
      return undefined;
    }
    return this.run(route, req, res);
  };

  /**
   * `invoke` for a function functions-framework serves alone (`--target`): the route's `admit`
   * runs first, as the pipeline runs it (there before the body is read; here the framework has
   * read it already), so that a refusal such as an unauthenticated sender holds there too.
   */
  readonly invokeAlone: HttpFunction = (req: Request, res: Response): unknown => {
    const route = this.routeFor(req.path);
    if (route?.admit === undefined || this.refusal(route, req.method) !== undefined) {
      return this.invoke(req, res) as unknown;
    }
    return Promise.resolve()
      .then(() => route.admit?.(req, res))
      .then(
        (refused): unknown => {
          if (refused === undefined) return this.invoke(req, res) as unknown;
          sendJson(res, refused.status, { error: refused.error }, refused.headers);
          return undefined;
        },
        (error: unknown) => {
          this.fail(route, res, error);
        },
      );
  };

  /** Runs a route's handler. Stays synchronous for synchronous handlers: probes are the hot path. */
  run(route: Route, req: RouteRequest, res: ServerResponse): void | Promise<void> {
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

  private fail(route: Route, res: ServerResponse, error: unknown): void {
    this.logger.error('request failed', { route: route.path, error: errorName(error) });
    if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
  }
}
