import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { sendJson } from '../http/respond';
import type { Route, RouteRequest } from '../http/router';
import type { Logger } from '../logger';
import { receivedEventOf, type ReceivedEvent, type TakeResult } from './event';

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
): Route {
  return {
    name,
    path: '/',
    methods: ['POST'],
    body: 'raw',
    maxBodyBytes,
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

export interface EventFunctionDependencies {
  logger: Logger;
  /** Counts a request that holds no usable CloudEvent. */
  countInvalid: () => void;
  /** Largest CloudEvent taken, in bytes. */
  maxBodyBytes: number;
}

/**
 * A function Knative Eventing delivers to (`name`), as a route: behind the image's entry, and
 * routed with the probes under `--target` (an HTTP function there too: the framework's cloudEvent
 * signature answers every refusal 500 and crashes on a GET). A request that holds no CloudEvent
 * gets one warning and is counted `invalid`.
 */
export function eventEndpoints(
  name: string,
  take: EventTaker,
  deps: EventFunctionDependencies,
): { route: Route } {
  const onInvalid = (error: string) => {
    deps.logger.warn('cloudevent refused', { function: name, reason: error });
    deps.countInvalid();
  };
  return {
    route: eventRoute(name, deps.maxBodyBytes, take, onInvalid),
  };
}
