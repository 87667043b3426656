import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { CloudEventFunction } from '@google-cloud/functions-framework';
import { sendJson } from '../http/respond';
import type { Route, RouteRequest } from '../http/router';
import type { Logger } from '../logger';
import { receivedEventOf, type ReceivedEvent, type TakeResult } from './event';
import type { Authenticate } from './sender-identity';

let sdk: typeof import('cloudevents') | undefined;
/** The SDK, loaded on first use, not at start: only the worker and dead-letter functions take events. */
function cloudevents(): typeof import('cloudevents') {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  sdk ??= require('cloudevents') as typeof import('cloudevents');
  return sdk;
}

/**
 * The CloudEvent in an HTTP request, binary or structured mode, as the cloudevents SDK reads it;
 * undefined when the request holds none (or a batch). The SDK parses and does not validate: the
 * caller checks the attributes it needs.
 */
export function cloudEventFrom(headers: IncomingHttpHeaders, body: Buffer): unknown {
  const { HTTP } = cloudevents();
  const plain: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (typeof value === 'string') plain[name] = value;
  }
  try {
    const event: unknown = HTTP.toEvent({ headers: plain, body: body.toString('utf8') });
    return Array.isArray(event) ? undefined : event;
  } catch {
    return undefined;
  }
}

/** Takes one checked event and says how Knative is answered. */
export type EventTaker = (event: ReceivedEvent) => Promise<TakeResult>;

/** Refused or failed: functions-framework answers a throw from a cloudEvent function with 500. */
export class EventNotTaken extends Error {
  constructor(readonly result: TakeResult) {
    super(`event not taken: ${result.status} ${result.error ?? ''}`);
    this.name = 'EventNotTaken';
  }
}

/**
 * POST / as a route of the pipeline: a CloudEvent in binary or structured mode, read raw
 * (`maxBodyBytes`), then answered as Knative's delivery contract reads it: 204 with no body when
 * taken, else the result's status with a JSON reason (400 is not retried; 409, 5xx are).
 */
function eventRoute(
  name: string,
  maxBodyBytes: number,
  take: EventTaker,
  onInvalid: (error: string) => void,
  authenticate: Authenticate | undefined,
): Route {
  return {
    name,
    path: '/',
    methods: ['POST'],
    body: 'raw',
    maxBodyBytes,
    ...(authenticate === undefined ? {} : { admit: authenticate }),
    handler: async (req: RouteRequest, res: ServerResponse) => {
      const checked = receivedEventOf(cloudEventFrom(req.headers, req.rawBody ?? Buffer.alloc(0)));
      if (!checked.ok) {
        onInvalid(checked.error);
        sendJson(res, 400, { error: checked.error });
        return;
      }
      const result = await take(checked.event);
      if (result.status === 204) {
        res.writeHead(204, { 'Cache-Control': 'no-store' });
        res.end();
      } else {
        const { retryAfterSeconds } = result;
        const headers =
          retryAfterSeconds === undefined
            ? undefined
            : { 'Retry-After': String(retryAfterSeconds) };
        sendJson(res, result.status, { error: result.error ?? 'not taken' }, headers);
      }
    },
  };
}

/**
 * The same as a functions-framework `cloudEvent` function, for `--target`: the framework answers
 * 204 when it returns and 500 when it throws, so there every refusal is a 500 (retried). The
 * framework shows such a function no request headers, so with authentication it takes nothing.
 */
function eventFunction(
  take: EventTaker,
  onInvalid: (error: string) => void,
  authenticated: boolean,
): CloudEventFunction {
  return async (cloudEvent) => {
    if (authenticated) throw new EventNotTaken(CANNOT_AUTHENTICATE);
    const checked = receivedEventOf(cloudEvent);
    if (!checked.ok) {
      onInvalid(checked.error);
      throw new EventNotTaken({ status: 400, error: checked.error });
    }
    const result = await take(checked.event);
    if (result.status !== 204) throw new EventNotTaken(result);
  };
}

/** What a cloudEvent function answers when deliveries must be authenticated: it cannot check. */
const CANNOT_AUTHENTICATE: TakeResult = {
  status: 401,
  error: 'unauthenticated: served alone, the sender cannot be checked',
};

export interface EventFunctionDependencies {
  logger: Logger;
  /** Counts a request that holds no usable CloudEvent. */
  countInvalid: () => void;
  /** Largest CloudEvent taken, in bytes. */
  maxBodyBytes: number;
  /** Checks each delivery's sender before its body is read (the route's admission); none: all taken. */
  authenticate?: Authenticate;
}

/**
 * A function Knative Eventing delivers to (`name`): as a route behind the image's entry, and as a
 * functions-framework cloudEvent function for `--target`. A request that holds no CloudEvent gets
 * one warning and is counted `invalid`.
 */
export function eventEndpoints(
  name: string,
  take: EventTaker,
  deps: EventFunctionDependencies,
): { route: Route; cloudEvent: CloudEventFunction } {
  const onInvalid = (error: string) => {
    deps.logger.warn('cloudevent refused', { function: name, reason: error });
    deps.countInvalid();
  };
  return {
    route: eventRoute(name, deps.maxBodyBytes, take, onInvalid, deps.authenticate),
    cloudEvent: eventFunction(take, onInvalid, deps.authenticate !== undefined),
  };
}
