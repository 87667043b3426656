import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { InFlightLimit } from '../http/in-flight';
import { sendJson } from '../http/respond';
import type { Route, RouteRequest } from '../http/router';
import type { Logger } from '../logger';
import { receivedEventOf, type Checked, type ReceivedEvent, type TakeResult } from './event';
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

/** The SDK's rule: a structured (or batched) event says so in its content type; else binary. */
const isStructured = (headers: IncomingHttpHeaders): boolean =>
  // Stryker disable next-line StringLiteral: any fallback that is not a CloudEvents type is binary.
  (headers['content-type'] ?? '').trim().toLowerCase().startsWith('application/cloudevents');

/**
 * The checked CloudEvent in an HTTP request. A binary event must carry `ce-specversion`: the SDK
 * would take one without it as 1.0, where CloudEvents requires the attribute.
 */
export function receivedEventFrom(headers: IncomingHttpHeaders, body: Buffer): Checked {
  if (!isStructured(headers) && headers['ce-specversion'] === undefined) {
    return { ok: false, error: 'specversion must be 1.0' };
  }
  return receivedEventOf(cloudEventFrom(headers, body));
}

/** Takes one checked event and says how Knative is answered. */
export type EventTaker = (event: ReceivedEvent) => Promise<TakeResult>;

/**
 * POST / as a route of the pipeline: a CloudEvent in binary or structured mode, its sender
 * authenticated (`authenticate`, when given: else 401) and then admitted within
 * `limit` before its body is read (else 429 with Retry-After, which Knative retries), read raw
 * (`maxBodyBytes`), then answered as Knative's delivery contract reads it: 204 with no body when
 * taken, else the result's status with a JSON reason (400 is not retried; 409, 429, 5xx are).
 */
function eventRoute(
  name: string,
  maxBodyBytes: number,
  take: EventTaker,
  onInvalid: (error: string) => void,
  limit: InFlightLimit,
  authenticate: Authenticate | undefined,
): Route {
  return {
    name,
    path: '/',
    methods: ['POST'],
    body: 'raw',
    maxBodyBytes,
    // The sender first: a forged delivery never takes a place from the Broker's.
    admit:
      authenticate === undefined
        ? limit.admit
        : async (req, res) => (await authenticate(req)) ?? limit.admit(req, res),
    handler: async (req: RouteRequest, res: ServerResponse) => {
      await limit.during(req, () => answer(req, res, take, onInvalid));
    },
  };
}

/** One admitted delivery: checked, taken, answered. */
async function answer(
  req: RouteRequest,
  res: ServerResponse,
  take: EventTaker,
  onInvalid: (error: string) => void,
): Promise<void> {
  const checked = receivedEventFrom(req.headers, req.rawBody ?? Buffer.alloc(0));
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
      retryAfterSeconds === undefined ? undefined : { 'Retry-After': String(retryAfterSeconds) };
    sendJson(res, result.status, { error: result.error ?? 'not taken' }, headers);
  }
}

export interface EventFunctionDependencies {
  logger: Logger;
  /** Counts a request that holds no usable CloudEvent. */
  countInvalid: () => void;
  /** Largest CloudEvent taken, in bytes. */
  maxBodyBytes: number;
  /** Most deliveries taken at once behind the image's entry (EVENT_MAX_IN_FLIGHT). */
  maxInFlight: number;
  /** Counts a delivery refused 429 for want of room, with its `ce-type` header if it has one. */
  countOverloaded: (type: string | undefined) => void;
  /** Checks each delivery's sender before its body is read (the route's admission); none: all taken. */
  authenticate?: Authenticate;
}

/**
 * A function Knative Eventing delivers to (`name`), as a route: behind the image's entry, and
 * routed with the probes under `--target` (an HTTP function there too: the framework's cloudEvent
 * signature answers every refusal 500 and crashes on a GET). A request that holds no CloudEvent
 * gets one warning and is counted `invalid`. Under `--target` the framework reads every body
 * before this code runs: only behind the image's entry is a delivery admitted before its body.
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
  const limit = new InFlightLimit(deps.maxInFlight, (req: IncomingMessage) => {
    const type = req.headers['ce-type'];
    deps.countOverloaded(typeof type === 'string' ? type : undefined);
  });
  return {
    route: eventRoute(name, deps.maxBodyBytes, take, onInvalid, limit, deps.authenticate),
  };
}
