import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** What every log line written on behalf of a request carries. */
export interface RequestContext {
  /** The incoming request id (Kong's correlation-id), or a UUID v4 made here. */
  requestId: string;
  /** The W3C trace id from a valid `traceparent`, when there is one. */
  traceId?: string;
}

/** Ids Kong and other proxies make: UUIDs, `uuid#counter`, hex; nothing that could forge a log. */
const REQUEST_ID = /^[A-Za-z0-9._:#-]{1,128}$/;
/** W3C Trace Context, version 00: 00-<trace id>-<parent id>-<flags>. */
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/;
const ZERO_TRACE_ID = '0'.repeat(32);
const ZERO_PARENT_ID = '0'.repeat(16);

const storage = new AsyncLocalStorage<RequestContext>();

/** The context of the request being handled, if any; follows promises and timers. */
export function currentContext(): RequestContext | undefined {
  return storage.getStore();
}

/** Runs `fn` (and everything it starts) as part of the request `context`. */
export function runInContext<T>(context: RequestContext, fn: () => T): T {
  return storage.run(context, fn);
}

function single(value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' ? value.trim() : undefined;
}

/** The trace id of a valid `traceparent` header. */
export function traceIdOf(traceparent: string | string[] | undefined): string | undefined {
  const value = single(traceparent);
  if (value === undefined) return undefined;
  const match = TRACEPARENT.exec(value.toLowerCase());
  if (match === null || match[1] === ZERO_TRACE_ID || match[2] === ZERO_PARENT_ID) return undefined;
  return match[1];
}

/**
 * Each request's context, made once from its headers: the request id header's value when it is
 * well-formed, else a new UUID v4; the trace id of a valid `traceparent`.
 */
export class RequestContexts {
  /**
   * Where a request keeps its context: a property of the request's own under a key of this
   * object's, so it goes with the request. A WeakMap costs every request an ephemeron (an entry
   * the garbage collector must trace apart): a set and two gets took about 1.7 µs in a loop on
   * Node 24.
   */
  private readonly key = Symbol('request context');
  private readonly header: string;

  constructor(header: string) {
    this.header = header.toLowerCase();
  }

  /** The name of the header that carries the id in and out. */
  get headerName(): string {
    return this.header;
  }

  of(req: IncomingMessage): RequestContext {
    const held = req as IncomingMessage & Record<symbol, RequestContext | undefined>;
    let context = held[this.key];
    if (context === undefined) {
      const given = single(req.headers[this.header]);
      const traceId = traceIdOf(req.headers.traceparent);
      const requestId = given !== undefined && REQUEST_ID.test(given) ? given : randomUUID();
      context = traceId === undefined ? { requestId } : { requestId, traceId };
      held[this.key] = context;
    }
    return context;
  }
}
