import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { CloudEvent, HTTP } from 'cloudevents';

/**
 * A stand-in for a Knative Broker of class Kafka and its Triggers, in the test process on loopback:
 * its ingress takes CloudEvents POSTed to K_SINK, its dispatcher delivers each to every Trigger's
 * subscriber with the Trigger's `delivery` settings. It follows Knative's data-plane contract as
 * eventing-kafka-broker implements it, read at commit 7d8fe89 (data-plane/):
 * - receiver IngressRequestHandlerImpl: 202 once stored, 400 when the event cannot be parsed,
 *   503 when it cannot be stored; ReceiverVerticle: 404 off the broker's path, 405 for other methods.
 * - dispatcher WebClientCloudEventSender: binary mode, `Prefer: reply`; retried on 5xx, 404, 408,
 *   409, 429 and on every error without an answer (refused, reset, timeout); the wait before retry
 *   n (1-based) is delay·2^n (exponential) or delay·n (linear), or a 429's or 503's Retry-After
 *   capped at `retryAfterMax` when set and longer (the `delivery-retryafter` feature); `timeout`
 *   bounds each attempt (600 s when unset). Other statuses ≥ 300 are not retried.
 * - dispatcher BaseResponseHandler: a 2xx whose body is non-empty and not a CloudEvent fails after
 *   the sender is done, so it is not retried and goes to the dead-letter sink; a 2xx that is a
 *   CloudEvent is a reply, written back to the Broker.
 * - dispatcher RecordDispatcherImpl.errorTransform: the dead-lettered event carries
 *   `knativeerrordest` (the Trigger's subscriber URL) always; with an answer also `knativeerrorcode`
 *   (the status, as a string), `knativeerrordata` (base64 of the body's first 1024 bytes; left out
 *   here when the body is empty) and each `kne-<name>` answer header as extension `<name>`.
 *   (knative/eventing's own dispatcher, pkg/kncloudevents/event_dispatcher.go, differs: it gives a
 *   network error code 500 with "dispatch error: ..." as data, and truncates the base64 text to 1024.)
 * - With Knative's `delivery-retryafter` feature and the Trigger's `delivery.retryAfterMax`, a 429
 *   or 503 answer's `Retry-After` (seconds or an HTTP date) makes the wait before the next retry
 *   the larger of the backoff and min(Retry-After, retryAfterMax) (knative/eventing
 *   pkg/kncloudevents retries.go); without retryAfterMax (or with 0) the header is ignored.
 * - ConsumerVerticleBuilder: the dead-letter sink is sent to with the same delivery settings; when
 *   that fails too, or there is none, the event is dropped (its offset committed all the same).
 * - With Knative's `authentication-oidc` feature (eventing pkg/auth, TokenProvider), each request
 *   to a subscriber or dead-letter sink carries `Authorization: Bearer <token>`: a token of the
 *   Trigger's own OIDC service account for that destination's audience, fetched per request
 *   (`token` below).
 * A Trigger sees the events accepted after it was added, like a new consumer group at `latest`.
 * Nothing of CoffeeBuddy's code is used here.
 */

export type BackoffPolicy = 'exponential' | 'linear';

/** A Trigger's `spec.delivery`, durations in milliseconds. */
export interface DeliverySpec {
  /** Attempts after the first. */
  retry: number;
  backoffPolicy: BackoffPolicy;
  backoffDelayMs: number;
  /** Bounds each attempt, the answer's body included. */
  timeoutMs: number;
  /** Where an event goes once the subscriber has failed it for good. */
  deadLetterSink?: string;
  /**
   * `retryAfterMax` (Knative's `delivery-retryafter` feature): a 429 or 503 answer's
   * `Retry-After`, capped at this, is waited when longer than the backoff. Unset or 0:
   * Retry-After is ignored.
   */
  retryAfterMaxMs?: number;
}

/** An ISO-8601 duration of the kinds Knative's delivery fields take (`PT0.5S`, `PT1M`), in ms. */
export function isoDurationMs(iso: string): number {
  const match = /^PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?$/.exec(iso);
  if (match === null || iso === 'PT') throw new Error(`not an ISO-8601 duration: ${iso}`);
  const [, hours = '0', minutes = '0', seconds = '0'] = match;
  return ((Number(hours) * 60 + Number(minutes)) * 60 + Number(seconds)) * 1000;
}

/** A Trigger manifest's `spec.delivery` as the stand-in takes it (no dead-letter sink). */
export function deliverySpecOf(delivery: {
  retry: number;
  backoffPolicy: BackoffPolicy;
  backoffDelay: string;
  timeout: string;
  retryAfterMax?: string;
}): DeliverySpec {
  return {
    retry: delivery.retry,
    backoffPolicy: delivery.backoffPolicy,
    backoffDelayMs: isoDurationMs(delivery.backoffDelay),
    timeoutMs: isoDurationMs(delivery.timeout),
    ...(delivery.retryAfterMax === undefined
      ? {}
      : { retryAfterMaxMs: isoDurationMs(delivery.retryAfterMax) }),
  };
}

/** Knative's Broker defaults (config-br-defaults: 10 retries, exponential from PT0.2S) and the
 * Kafka dispatcher's 600 s attempt timeout. Tests should pass small values. */
export const DEFAULT_DELIVERY: Readonly<DeliverySpec> = {
  retry: 10,
  backoffPolicy: 'exponential',
  backoffDelayMs: 200,
  timeoutMs: 600_000,
};

export interface TriggerInput {
  /** Names the Trigger in the records; `trigger-<n>` when left out. */
  name?: string;
  /** The subscriber's URL, as the Trigger's status shows it (`knativeerrordest`). */
  url: string;
  /** The pods behind `url`, tried in turn from one attempt to the next; `[url]` when left out. */
  endpoints?: readonly string[];
  /** Which events the Trigger takes; all when left out. */
  filter?: (event: CloudEvent<unknown>) => boolean;
  /** Missing fields take DEFAULT_DELIVERY's. */
  delivery?: Partial<DeliverySpec>;
  /**
   * The Bearer token sent with each request to the subscriber or the dead-letter sink (OIDC: the
   * Trigger's service account, for that destination's audience); none when left out.
   */
  token?: (target: 'subscriber' | 'deadLetterSink') => string | Promise<string>;
}

export interface Trigger {
  readonly name: string;
  readonly url: string;
  readonly delivery: Readonly<DeliverySpec>;
  /** May be replaced while deliveries run (a pod killed, another started). */
  endpoints: readonly string[];
}

/** How the ingress answers one valid CloudEvent: stored and 202; 503 (the write to Kafka failed);
 * never answered until the client gives up or close(); the connection destroyed. */
export type IngestAnswer = 'accept' | 'fail503' | 'hang' | 'reset';

export interface IngestRequest {
  /** 1-based count of ingest requests, whatever their answer. */
  readonly n: number;
  readonly event: CloudEvent<unknown>;
  readonly contentMode: 'binary' | 'structured';
}

/** 'refuse' stops listening, so connections are refused, until another mode is set. */
export type IngestMode =
  IngestAnswer | 'refuse' | ((request: IngestRequest) => IngestAnswer | Promise<IngestAnswer>);

export interface IngestRecord {
  readonly n: number;
  /** Date.now() when the request's body had arrived. */
  readonly at: number;
  readonly method: string;
  readonly path: string;
  readonly contentMode: 'binary' | 'structured' | 'batch' | 'none';
  readonly eventId: string | undefined;
  /** The status answered, or what happened instead. */
  readonly answer: 202 | 400 | 404 | 405 | 500 | 503 | 'hang' | 'reset';
  /** Why a 400 (the parser's message) or a 500 (the ingest function threw). */
  readonly reason?: string;
}

export interface AcceptedEvent {
  /** Position in the Broker's log, from 0. */
  readonly offset: number;
  readonly event: CloudEvent<unknown>;
  readonly acceptedAt: number;
  /** 'reply' when a subscriber answered it to another event. */
  readonly from: 'ingress' | 'reply';
}

export interface DeliveryAttempt {
  readonly eventId: string;
  readonly eventSource: string;
  readonly trigger: string;
  readonly target: 'subscriber' | 'deadLetterSink';
  /** The URL this attempt went to (one of the endpoints, or the dead-letter sink). */
  readonly url: string;
  /** 0 for the first attempt, n for the n-th retry. */
  readonly attempt: number;
  readonly startedAt: number;
  readonly endedAt: number;
  readonly status: number | undefined;
  /** Without an answer: the error code (ECONNREFUSED, ECONNRESET, ...) or 'timeout'. */
  readonly error: string | undefined;
  /** 'ok': done; 'retryable': retried if retries are left; 'failed': never retried. */
  readonly result: 'ok' | 'retryable' | 'failed';
  /** The answer's body, up to 64 KiB. */
  readonly body: Buffer;
  /** The wait before the next attempt (backoff, or Retry-After as retryAfterMax allows). */
  readonly waitMs?: number;
  /** The answer's `Retry-After` header, as sent. */
  readonly retryAfter?: string;
}

export interface Settlement {
  readonly eventId: string;
  readonly eventSource: string;
  readonly trigger: string;
  /** 'dropped': failed with no dead-letter sink, or the dead-letter sink failed too. */
  readonly outcome: 'delivered' | 'deadLettered' | 'dropped';
  readonly at: number;
  /** The event as sent to the dead-letter sink, with Knative's error extensions. */
  readonly deadLetter?: CloudEvent<unknown>;
}

export interface DelivererInput {
  /** Default 'accept'. */
  ingest?: IngestMode;
  /** Deliveries (event × Trigger, retries and backoff included) running at once. Default 16. */
  concurrency?: number;
  /** The Broker's namespace and name: K_SINK's path is /<namespace>/<name>. */
  namespace?: string;
  broker?: string;
}

export interface Deliverer {
  /** The Broker's ingress URL: what K_SINK would be. */
  readonly url: string;
  readonly ingestLog: readonly IngestRecord[];
  /** The Broker's log: every event stored, in order. */
  readonly events: readonly AcceptedEvent[];
  readonly attempts: readonly DeliveryAttempt[];
  readonly settlements: readonly Settlement[];
  /** Deliveries (event × Trigger) not settled yet. */
  readonly unsettled: number;
  addTrigger(input: TriggerInput): Trigger;
  /** Takes effect for the next request; resolves once the port listens or refuses as asked. */
  setIngest(mode: IngestMode): Promise<void>;
  /** Resolves once predicate() holds, checked after every change and every 10 ms; rejects after
   * timeoutMs, or at close(). */
  waitFor(predicate: () => boolean, timeoutMs: number, what?: string): Promise<void>;
  /** Resolves once every accepted event is settled for every Trigger that took it. */
  waitForSettled(timeoutMs: number): Promise<void>;
  /** Attempts and settlements of one event, for a failure message. */
  describe(eventId: string): string;
  /** Stops listening, aborts attempts and backoff waits, and resolves once nothing is left. */
  close(): Promise<void>;
}

const RETRYABLE_4XX = new Set([404, 408, 409, 429]);
const ERROR_DATA_MAX_BYTES = 1024;
const ERROR_HEADER_PREFIX = 'kne-';
const BODY_KEPT_BYTES = 64 * 1024;
const INGEST_BODY_MAX_BYTES = 16 * 1024 * 1024;
const WAIT_POLL_MS = 10;

/** WebClientCloudEventSender.isRetryableStatusCode. */
export function isRetryableStatus(status: number): boolean {
  return status >= 500 || RETRYABLE_4XX.has(status);
}

/** The wait before retry n (1-based), as WebClientCloudEventSender.computeRetryPolicy. */
export function backoffMs(
  delivery: Pick<DeliverySpec, 'backoffPolicy' | 'backoffDelayMs'>,
  n: number,
) {
  return delivery.backoffPolicy === 'linear'
    ? delivery.backoffDelayMs * n
    : delivery.backoffDelayMs * 2 ** n;
}

/** A `Retry-After` value in milliseconds: delay-seconds or an HTTP date; undefined if unreadable. */
export function retryAfterMs(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(date - now, 0);
}

/**
 * The wait before retry n (1-based) after `answer`: the backoff, or for a 429 or 503 with a
 * readable Retry-After and a Trigger with retryAfterMax, the larger of the backoff and
 * min(Retry-After, retryAfterMax).
 */
export function retryWaitMs(
  delivery: Pick<DeliverySpec, 'backoffPolicy' | 'backoffDelayMs' | 'retryAfterMaxMs'>,
  n: number,
  answer: SubscriberAnswer,
): number {
  const backoff = backoffMs(delivery, n);
  const max = delivery.retryAfterMaxMs ?? 0;
  if (max <= 0 || 'error' in answer || (answer.status !== 429 && answer.status !== 503)) {
    return backoff;
  }
  const header = answer.headers['retry-after'];
  const asked = retryAfterMs(Array.isArray(header) ? header[0] : header);
  return asked === undefined ? backoff : Math.max(backoff, Math.min(asked, max));
}

type TriggerState = Trigger & {
  readonly filter: TriggerInput['filter'];
  readonly token: TriggerInput['token'];
  turn: number;
};

/** What one attempt got: an answer, or the error that stood for one. */
export type SubscriberAnswer =
  { status: number; headers: http.IncomingHttpHeaders; body: Buffer } | { error: string };

/** The extensions the Kafka dispatcher adds before dead-lettering (RecordDispatcherImpl.errorTransform). */
export function errorExtensions(
  destination: string,
  answer: SubscriberAnswer,
): Record<string, string> {
  const extensions: Record<string, string> = { knativeerrordest: destination };
  if ('error' in answer) return extensions;
  extensions.knativeerrorcode = String(answer.status);
  for (const [name, value] of Object.entries(answer.headers)) {
    if (!name.toLowerCase().startsWith(ERROR_HEADER_PREFIX) || value === undefined) continue;
    const extension = name.slice(ERROR_HEADER_PREFIX.length).toLowerCase();
    // CloudEvents extension names are [a-z0-9]; the SDK refuses others.
    if (/^[a-z0-9]+$/.test(extension)) {
      extensions[extension] = Array.isArray(value) ? value.join(',') : value;
    }
  }
  if (answer.body.length > 0) {
    extensions.knativeerrordata = answer.body.subarray(0, ERROR_DATA_MAX_BYTES).toString('base64');
  }
  return extensions;
}

function flatHeaders(headers: http.IncomingHttpHeaders): Record<string, string> {
  const flat: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) flat[name] = Array.isArray(value) ? value.join(',') : value;
  }
  return flat;
}

const REQUIRED_ATTRIBUTES = ['id', 'source', 'specversion', 'type'] as const;

/** The SDK fills in a missing id and specversion (and time) where Knative's parser refuses the
 * event, so the message itself is checked first. */
function missingAttributes(headers: http.IncomingHttpHeaders, body: Buffer): string[] {
  if (contentModeOf(headers) !== 'structured') {
    return REQUIRED_ATTRIBUTES.filter((name) => !headers[`ce-${name}`]);
  }
  const parsed: unknown = JSON.parse(body.toString('utf8'));
  if (typeof parsed !== 'object' || parsed === null) return [...REQUIRED_ATTRIBUTES];
  const attributes = parsed as Record<string, unknown>;
  return REQUIRED_ATTRIBUTES.filter((name) => {
    const value = attributes[name];
    return typeof value !== 'string' || value === '';
  });
}

/** A request or answer as a validated CloudEvent, or the reason it is not one. An event without
 * `time` gets the time it was parsed (the SDK's doing; Knative leaves it out). */
function parseEvent(
  headers: http.IncomingHttpHeaders,
  body: Buffer,
): { event: CloudEvent<unknown>; contentMode: 'binary' | 'structured' } | { reason: string } {
  try {
    const missing = missingAttributes(headers, body);
    if (missing.length > 0) return { reason: `required attributes missing: ${missing.join(', ')}` };
    const parsed = HTTP.toEvent({ headers: flatHeaders(headers), body: body.toString('utf8') });
    if (Array.isArray(parsed) || !(parsed instanceof CloudEvent)) {
      return { reason: 'batched events are not accepted' };
    }
    // toEvent builds the event without validating it.
    parsed.validate();
    const contentType = headers['content-type'] ?? '';
    return {
      event: parsed as CloudEvent<unknown>,
      contentMode: contentType.startsWith('application/cloudevents') ? 'structured' : 'binary',
    };
  } catch (error) {
    const details = (error as { errors?: unknown }).errors;
    const message = error instanceof Error ? error.message : String(error);
    return { reason: details === undefined ? message : `${message}: ${JSON.stringify(details)}` };
  }
}

function contentModeOf(headers: http.IncomingHttpHeaders): IngestRecord['contentMode'] {
  const contentType = headers['content-type'] ?? '';
  if (contentType.startsWith('application/cloudevents-batch')) return 'batch';
  if (contentType.startsWith('application/cloudevents')) return 'structured';
  return headers['ce-id'] === undefined ? 'none' : 'binary';
}

export async function startDeliverer(input: DelivererInput = {}): Promise<Deliverer> {
  const concurrency = input.concurrency ?? 16;
  const brokerPath = `/${input.namespace ?? 'default'}/${input.broker ?? 'default'}`;
  const ingestLog: IngestRecord[] = [];
  const events: AcceptedEvent[] = [];
  const attempts: DeliveryAttempt[] = [];
  const settlements: Settlement[] = [];
  const triggers: TriggerState[] = [];
  const state = { ingest: input.ingest ?? 'accept', closed: false, unsettled: 0, running: 0 };

  // Everything that may still be running, so that close() can stop and await it.
  const sockets = new Set<Socket>();
  const requests = new Set<http.ClientRequest>();
  const sleeps = new Map<NodeJS.Timeout, () => void>();
  const tasks = new Set<Promise<void>>();
  const slotQueue: (() => void)[] = [];
  const watchers = new Set<() => void>();
  const agent = new http.Agent({ keepAlive: true });

  const isClosed = () => state.closed;
  const changed = () => {
    for (const watcher of [...watchers]) watcher();
  };

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        sleeps.delete(timer);
        resolve();
      }, ms);
      sleeps.set(timer, resolve);
    });

  const acquireSlot = async () => {
    if (state.running >= concurrency) await new Promise<void>((resolve) => slotQueue.push(resolve));
    state.running += 1;
  };
  const releaseSlot = () => {
    state.running -= 1;
    slotQueue.shift()?.();
  };

  /** One POST in binary mode, bounded by timeoutMs; never rejects. */
  const post = (
    url: string,
    event: CloudEvent<unknown>,
    timeoutMs: number,
    token: string | undefined,
  ) =>
    new Promise<SubscriberAnswer>((resolve) => {
      const message = HTTP.binary(event);
      const body =
        message.body === undefined || message.body === null
          ? Buffer.alloc(0)
          : Buffer.from(message.body as string | Uint8Array);
      let settled = false;
      const finish = (answer: SubscriberAnswer) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        requests.delete(request);
        resolve(answer);
      };
      const request = http.request(url, {
        method: 'POST',
        agent,
        headers: {
          ...flatHeaders(message.headers),
          Prefer: 'reply',
          'Content-Length': String(body.length),
          ...(token === undefined ? {} : { Authorization: `Bearer ${token}` }),
        },
      });
      requests.add(request);
      const timer = setTimeout(() => {
        finish({ error: 'timeout' });
        request.destroy();
      }, timeoutMs);
      request.on('error', (error: NodeJS.ErrnoException) => {
        finish({ error: state.closed ? 'closed' : (error.code ?? error.message) });
      });
      request.on('response', (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', (error: NodeJS.ErrnoException) => {
          finish({ error: error.code ?? error.message });
        });
        response.on('end', () => {
          finish({
            status: response.statusCode ?? 0,
            headers: response.headers,
            body: Buffer.concat(chunks),
          });
        });
        // Cut off before its end (a timeout, close(), the subscriber gone): no answer.
        response.on('close', () => {
          finish({ error: state.closed ? 'closed' : 'ECONNRESET' });
        });
      });
      request.end(body);
    });

  /** Sends with retries and backoff; the last answer, and whether it counts as done. */
  const send = async (
    trigger: TriggerState,
    target: DeliveryAttempt['target'],
    event: CloudEvent<unknown>,
  ): Promise<
    { done: boolean; answer: SubscriberAnswer; reply?: CloudEvent<unknown> } | undefined
  > => {
    const { delivery } = trigger;
    for (let attempt = 0; ; attempt += 1) {
      if (state.closed) return undefined;
      const url =
        target === 'deadLetterSink'
          ? (delivery.deadLetterSink ?? '')
          : (trigger.endpoints[trigger.turn++ % trigger.endpoints.length] ?? trigger.url);
      const startedAt = Date.now();
      const token = await trigger.token?.(target);
      const answer = await post(url, event, delivery.timeoutMs, token);
      // close() may have run while the attempt was on the wire.
      if (isClosed()) return undefined;
      let result: DeliveryAttempt['result'];
      let reply: CloudEvent<unknown> | undefined;
      let error = 'error' in answer ? answer.error : undefined;
      if ('error' in answer) {
        result = 'retryable';
      } else if (answer.status >= 200 && answer.status < 300) {
        const parsed = parseEvent(answer.headers, answer.body);
        if ('event' in parsed) {
          result = 'ok';
          reply = parsed.event;
        } else if (answer.body.length === 0) {
          result = 'ok';
        } else {
          result = 'failed';
          error = `the 2xx body is not a CloudEvent: ${parsed.reason}`;
        }
      } else {
        result = isRetryableStatus(answer.status) ? 'retryable' : 'failed';
      }
      const last = result !== 'retryable' || attempt >= delivery.retry;
      const waitMs = last ? undefined : retryWaitMs(delivery, attempt + 1, answer);
      attempts.push({
        eventId: event.id,
        eventSource: event.source,
        trigger: trigger.name,
        target,
        url,
        attempt,
        startedAt,
        endedAt: Date.now(),
        status: 'error' in answer ? undefined : answer.status,
        error,
        result,
        body: 'error' in answer ? Buffer.alloc(0) : answer.body.subarray(0, BODY_KEPT_BYTES),
        ...(waitMs === undefined ? {} : { waitMs }),
        ...('error' in answer || typeof answer.headers['retry-after'] !== 'string'
          ? {}
          : { retryAfter: answer.headers['retry-after'] }),
      });
      changed();
      if (result === 'ok') return { done: true, answer, ...(reply && { reply }) };
      // The sender's answer decides the error extensions; a bad 2xx body fails without one.
      const failure: SubscriberAnswer =
        result === 'failed' && 'status' in answer && answer.status < 300
          ? { error: error ?? 'failed' }
          : answer;
      if (waitMs === undefined) return { done: false, answer: failure };
      await sleep(waitMs);
    }
  };

  const settle = (
    event: CloudEvent<unknown>,
    trigger: Trigger,
    rest: Pick<Settlement, 'outcome' | 'deadLetter'>,
  ) => {
    settlements.push({
      eventId: event.id,
      eventSource: event.source,
      trigger: trigger.name,
      at: Date.now(),
      ...rest,
    });
    state.unsettled -= 1;
    changed();
  };

  const deliver = async (event: CloudEvent<unknown>, trigger: TriggerState) => {
    await acquireSlot();
    try {
      const sent = await send(trigger, 'subscriber', event);
      if (sent === undefined) return;
      if (sent.done) {
        if (sent.reply !== undefined) store(sent.reply, 'reply');
        settle(event, trigger, { outcome: 'delivered' });
        return;
      }
      if (trigger.delivery.deadLetterSink === undefined) {
        settle(event, trigger, { outcome: 'dropped' });
        return;
      }
      const deadLetter = event.cloneWith(errorExtensions(trigger.url, sent.answer), false);
      const dead = await send(trigger, 'deadLetterSink', deadLetter);
      if (dead === undefined) return;
      settle(event, trigger, { outcome: dead.done ? 'deadLettered' : 'dropped', deadLetter });
    } finally {
      releaseSlot();
    }
  };

  const store = (event: CloudEvent<unknown>, from: AcceptedEvent['from']) => {
    events.push({ offset: events.length, event, acceptedAt: Date.now(), from });
    for (const trigger of triggers) {
      if (trigger.filter !== undefined && !trigger.filter(event)) continue;
      state.unsettled += 1;
      const task = deliver(event, trigger).finally(() => tasks.delete(task));
      tasks.add(task);
    }
    changed();
  };

  let ingestCount = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > INGEST_BODY_MAX_BYTES) req.destroy();
      else chunks.push(chunk);
    });
    req.on('end', () => {
      ingest(req, res, Buffer.concat(chunks)).catch((error: unknown) => {
        // An ingest function that throws is a test's mistake: say so rather than hang.
        ingestLog.push({
          n: ingestCount,
          at: Date.now(),
          method: req.method ?? '',
          path: req.url ?? '',
          contentMode: contentModeOf(req.headers),
          eventId: undefined,
          answer: 500,
          reason: `the ingest function threw: ${String(error)}`,
        });
        if (!res.headersSent) res.writeHead(500).end();
        changed();
      });
    });
  });

  const ingest = async (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => {
    ingestCount += 1;
    const base = {
      n: ingestCount,
      at: Date.now(),
      method: req.method ?? '',
      path: new URL(req.url ?? '/', 'http://broker').pathname,
      contentMode: contentModeOf(req.headers),
    };
    const record = (answer: IngestRecord['answer'], eventId?: string, reason?: string) => {
      ingestLog.push({ ...base, eventId, answer, ...(reason !== undefined && { reason }) });
      changed();
    };
    if (base.path !== brokerPath) {
      record(404);
      res.writeHead(404).end();
      return;
    }
    if (req.method !== 'POST') {
      record(405);
      res.writeHead(405).end();
      return;
    }
    const parsed = parseEvent(req.headers, body);
    if ('reason' in parsed) {
      record(400, undefined, parsed.reason);
      res.writeHead(400).end();
      return;
    }
    const mode = state.ingest;
    const answer =
      typeof mode === 'function'
        ? await mode({ n: base.n, event: parsed.event, contentMode: parsed.contentMode })
        : mode === 'refuse'
          ? 'reset'
          : mode;
    if (state.closed) {
      req.socket.destroy();
      return;
    }
    record(answer === 'accept' ? 202 : answer === 'fail503' ? 503 : answer, parsed.event.id);
    switch (answer) {
      case 'accept':
        store(parsed.event, 'ingress');
        res.writeHead(202).end();
        return;
      case 'fail503':
        res.writeHead(503).end();
        return;
      case 'reset':
        req.socket.destroy();
        return;
      case 'hang':
        return;
    }
  };

  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  const stopListening = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      if (!server.listening) {
        resolve();
        return;
      }
      server.close(() => {
        resolve();
      });
    });

  await listen(0);
  const { port } = server.address() as AddressInfo;
  if (state.ingest === 'refuse') await stopListening();

  const waitFor = (predicate: () => boolean, timeoutMs: number, what = 'the condition') =>
    new Promise<void>((resolve, reject) => {
      if (predicate()) {
        resolve();
        return;
      }
      const watcher = () => {
        if (state.closed) {
          done();
          reject(new Error(`deliverer closed while waiting for ${what}`));
        } else if (predicate()) {
          done();
          resolve();
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new Error(
            `waited ${timeoutMs} ms for ${what}: ${events.length} events stored, ` +
              `${state.unsettled} deliveries unsettled, ${attempts.length} attempts, ` +
              `${settlements.length} settled`,
          ),
        );
      }, timeoutMs);
      // Predicates may also read state outside the deliverer (a subscriber's counts).
      const poll = setInterval(watcher, WAIT_POLL_MS);
      const done = () => {
        clearTimeout(timer);
        clearInterval(poll);
        watchers.delete(watcher);
      };
      watchers.add(watcher);
    });

  return {
    url: `http://127.0.0.1:${port}${brokerPath}`,
    ingestLog,
    events,
    attempts,
    settlements,
    get unsettled() {
      return state.unsettled;
    },
    addTrigger(triggerInput) {
      const delivery = { ...DEFAULT_DELIVERY, ...triggerInput.delivery };
      const trigger: TriggerState = {
        name: triggerInput.name ?? `trigger-${triggers.length + 1}`,
        url: triggerInput.url,
        delivery,
        endpoints: triggerInput.endpoints ?? [triggerInput.url],
        filter: triggerInput.filter,
        token: triggerInput.token,
        turn: 0,
      };
      triggers.push(trigger);
      return trigger;
    },
    async setIngest(mode) {
      if (state.closed) throw new Error('deliverer closed');
      state.ingest = mode;
      if (mode === 'refuse') await stopListening();
      else if (!server.listening) await listen(port);
    },
    waitFor,
    waitForSettled: (timeoutMs) =>
      waitFor(() => state.unsettled === 0, timeoutMs, 'every accepted event to settle'),
    describe(eventId) {
      const lines = attempts
        .filter((a) => a.eventId === eventId)
        .map(
          (a) =>
            `${a.trigger} ${a.target} #${a.attempt} ${a.url}: ${a.status ?? a.error ?? ''} (${a.result})`,
        );
      for (const s of settlements.filter((s) => s.eventId === eventId)) {
        lines.push(`${s.trigger}: ${s.outcome}`);
      }
      return lines.length === 0 ? `${eventId}: no attempts` : lines.join('\n');
    },
    async close() {
      if (state.closed) return;
      state.closed = true;
      changed();
      for (const [timer, wake] of sleeps) {
        clearTimeout(timer);
        wake();
      }
      sleeps.clear();
      for (const request of requests) request.destroy();
      for (const wake of slotQueue.splice(0)) wake();
      await Promise.allSettled([...tasks]);
      await stopListening();
      agent.destroy();
    },
  };
}
