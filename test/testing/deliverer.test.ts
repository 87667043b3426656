import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { CloudEvent, HTTP } from 'cloudevents';
import {
  backoffMs,
  retryAfterMs,
  retryWaitMs,
  startDeliverer,
  type Deliverer,
  type DeliverySpec,
} from '../../testing/deliverer';
import { absentUrl } from '../../testing/standins';

/** What a subscriber answers one request with; 'hang' never answers. */
type Reply = { status: number; body?: string; headers?: Record<string, string> } | 'hang';

interface Received {
  headers: http.IncomingHttpHeaders;
  body: string;
  at: number;
}

interface Subscriber {
  url: string;
  received: Received[];
  /** Requests being handled right now, and the most there ever were. */
  readonly inFlight: number;
  readonly maxInFlight: number;
  close(): Promise<void>;
}

const open: { close(): Promise<void> }[] = [];

/** A real HTTP subscriber on loopback; answer(n) decides the n-th request's answer (from 0). */
async function startSubscriber(
  answer: (n: number, received: Received) => Reply | Promise<Reply> = () => ({ status: 202 }),
): Promise<Subscriber> {
  const received: Received[] = [];
  const counts = { inFlight: 0, maxInFlight: 0 };
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      const entry = { headers: req.headers, body, at: Date.now() };
      const n = received.push(entry) - 1;
      counts.inFlight += 1;
      counts.maxInFlight = Math.max(counts.maxInFlight, counts.inFlight);
      res.on('close', () => (counts.inFlight -= 1));
      void Promise.resolve(answer(n, entry)).then((reply) => {
        if (reply === 'hang') return;
        res.writeHead(reply.status, reply.headers ?? {}).end(reply.body ?? '');
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const subscriber = {
    url: `http://127.0.0.1:${port}/`,
    received,
    get inFlight() {
      return counts.inFlight;
    },
    get maxInFlight() {
      return counts.maxInFlight;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => {
          resolve();
        });
      }),
  };
  open.push(subscriber);
  return subscriber;
}

async function deliverer(input?: Parameters<typeof startDeliverer>[0]): Promise<Deliverer> {
  const started = await startDeliverer(input);
  open.push(started);
  return started;
}

afterEach(async () => {
  await Promise.all(open.splice(0).map((thing) => thing.close()));
});

/** Fast delivery settings for tests. */
const FAST: DeliverySpec = {
  retry: 3,
  backoffPolicy: 'exponential',
  backoffDelayMs: 5,
  timeoutMs: 2000,
};

let sequence = 0;
function event(overrides: Record<string, unknown> = {}): CloudEvent<unknown> {
  sequence += 1;
  return new CloudEvent<unknown>({
    id: `Ev${sequence}`,
    source: '/slack/T123',
    type: 'com.slack.event.app_mention',
    datacontenttype: 'application/json',
    data: { n: sequence, text: 'hello' },
    ...overrides,
  });
}

/** A plain POST on a fresh connection: the status, or the error code when there is no answer. */
function post(
  url: string,
  message: { headers: Record<string, unknown>; body: unknown },
  timeoutMs = 2000,
  method = 'POST',
): Promise<number | string> {
  return new Promise((resolve) => {
    const body = Buffer.from(
      typeof message.body === 'string' ? message.body : JSON.stringify(message.body ?? ''),
    );
    const req = http.request(url, {
      method,
      agent: false,
      headers: {
        ...(message.headers as Record<string, string>),
        'Content-Length': method === 'GET' ? 0 : body.length,
      },
      timeout: timeoutMs,
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'timeout' })));
    req.on('error', (error: NodeJS.ErrnoException) => {
      resolve(error.code ?? error.message);
    });
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => {
        resolve(res.statusCode ?? 0);
      });
    });
    req.end(method === 'GET' ? undefined : body);
  });
}

const publish = (broker: Deliverer, e: CloudEvent<unknown>) => post(broker.url, HTTP.binary(e));

describe('ingest', () => {
  it('answers 202 to a binary-mode event once it is in the log', async () => {
    const broker = await deliverer();
    const e = event();
    expect(await publish(broker, e)).toBe(202);
    expect(broker.events).toHaveLength(1);
    const stored = broker.events[0]!;
    expect(stored.from).toBe('ingress');
    expect(stored.event.id).toBe(e.id);
    expect(stored.event.source).toBe('/slack/T123');
    expect(stored.event.type).toBe('com.slack.event.app_mention');
    expect(stored.event.data).toEqual(e.data);
    expect(broker.ingestLog[0]).toMatchObject({
      answer: 202,
      contentMode: 'binary',
      eventId: e.id,
    });
  });

  it('answers 202 to a structured-mode event, with the same attributes and data', async () => {
    const broker = await deliverer();
    const e = event({ partitionkey: 'T123' });
    expect(await post(broker.url, HTTP.structured(e))).toBe(202);
    const stored = broker.events[0]!.event;
    expect(stored.id).toBe(e.id);
    expect(stored.data).toEqual(e.data);
    expect(stored.partitionkey).toBe('T123');
    expect(broker.ingestLog[0]).toMatchObject({ answer: 202, contentMode: 'structured' });
  });

  it.each([
    ['binary without ce-source', { 'ce-specversion': '1.0', 'ce-id': 'x', 'ce-type': 't' }, '{}'],
    ['plain JSON', { 'content-type': 'application/json' }, '{"id":"x"}'],
    [
      'structured without an id',
      { 'content-type': 'application/cloudevents+json' },
      '{"specversion":"1.0","source":"/s","type":"t"}',
    ],
    ['structured, not JSON', { 'content-type': 'application/cloudevents+json' }, 'nope'],
  ])('answers 400 to %s and stores nothing', async (_name, headers, body) => {
    const broker = await deliverer();
    expect(await post(broker.url, { headers, body })).toBe(400);
    expect(broker.events).toHaveLength(0);
    expect(broker.ingestLog[0]?.answer).toBe(400);
    expect(broker.ingestLog[0]?.reason).toEqual(expect.any(String));
  });

  it('answers 404 off the broker path and 405 to other methods, as the Kafka receiver does', async () => {
    const broker = await deliverer({ namespace: 'coffee', broker: 'slack' });
    expect(new URL(broker.url).pathname).toBe('/coffee/slack');
    const message = HTTP.binary(event());
    expect(await post(new URL('/default/default', broker.url).href, message)).toBe(404);
    expect(await post(broker.url, message, 2000, 'GET')).toBe(405);
    expect(broker.events).toHaveLength(0);
  });

  it('answers 503 and stores nothing when set to fail, and recovers', async () => {
    const broker = await deliverer({ ingest: 'fail503' });
    expect(await publish(broker, event())).toBe(503);
    expect(broker.events).toHaveLength(0);
    await broker.setIngest('accept');
    expect(await publish(broker, event())).toBe(202);
    expect(broker.events).toHaveLength(1);
  });

  it('refuses connections when set to refuse, then listens again on the same URL', async () => {
    const broker = await deliverer();
    await broker.setIngest('refuse');
    expect(await publish(broker, event())).toBe('ECONNREFUSED');
    await broker.setIngest('accept');
    expect(await publish(broker, event())).toBe(202);
  });

  it('never answers when set to hang, and resets when set to reset', async () => {
    const broker = await deliverer({ ingest: 'hang' });
    expect(await post(broker.url, HTTP.binary(event()), 100)).toBe('timeout');
    await broker.setIngest('reset');
    expect(await publish(broker, event())).toBe('ECONNRESET');
    expect(broker.events).toHaveLength(0);
    expect(broker.ingestLog.map((r) => r.answer)).toEqual(['hang', 'reset']);
  });

  it('lets a function decide per request', async () => {
    const broker = await deliverer({
      ingest: ({ n }) => (n === 1 ? 'fail503' : 'accept'),
    });
    const e = event();
    expect(await publish(broker, e)).toBe(503);
    expect(await publish(broker, e)).toBe(202);
    expect(broker.ingestLog.map((r) => [r.n, r.eventId, r.answer])).toEqual([
      [1, e.id, 503],
      [2, e.id, 202],
    ]);
  });

  it('answers 500 when the ingest function throws, and records why', async () => {
    const broker = await deliverer({
      ingest: () => {
        throw new Error('test bug');
      },
    });
    expect(await publish(broker, event())).toBe(500);
    expect(broker.ingestLog[0]).toMatchObject({
      answer: 500,
      reason: expect.stringMatching(/test bug/),
    });
  });
});

describe('delivery', () => {
  it('delivers in binary mode once on a 2xx', async () => {
    const subscriber = await startSubscriber(() => ({ status: 204 }));
    const broker = await deliverer();
    broker.addTrigger({ name: 'worker', url: subscriber.url, delivery: FAST });
    const e = event();
    await publish(broker, e);
    await broker.waitForSettled(5000);

    expect(subscriber.received).toHaveLength(1);
    const { headers, body } = subscriber.received[0]!;
    expect(headers).toMatchObject({
      'ce-id': e.id,
      'ce-source': '/slack/T123',
      'ce-type': 'com.slack.event.app_mention',
      'ce-specversion': '1.0',
      'content-type': 'application/json',
      prefer: 'reply',
    });
    expect(JSON.parse(body)).toEqual(e.data);
    expect(broker.attempts).toEqual([
      expect.objectContaining({ eventId: e.id, trigger: 'worker', attempt: 0, status: 204 }),
    ]);
    expect(broker.settlements).toEqual([
      expect.objectContaining({ eventId: e.id, trigger: 'worker', outcome: 'delivered' }),
    ]);
  });

  it('delivers each event to every Trigger whose filter takes it', async () => {
    const all = await startSubscriber();
    const mentions = await startSubscriber();
    const broker = await deliverer();
    broker.addTrigger({ url: all.url, delivery: FAST });
    broker.addTrigger({
      url: mentions.url,
      delivery: FAST,
      filter: (e) => e.type === 'com.slack.event.app_mention',
    });
    await publish(broker, event());
    await publish(broker, event({ type: 'com.slack.interaction.block_actions' }));
    await broker.waitForSettled(5000);
    expect(all.received).toHaveLength(2);
    expect(mentions.received.map((r) => r.headers['ce-type'])).toEqual([
      'com.slack.event.app_mention',
    ]);
  });

  it.each([500, 503, 404, 408, 409, 429])('retries a %i, then delivers', async (status) => {
    const subscriber = await startSubscriber((n) => (n === 0 ? { status } : { status: 202 }));
    const broker = await deliverer();
    broker.addTrigger({ url: subscriber.url, delivery: FAST });
    const e = event();
    await publish(broker, e);
    await broker.waitForSettled(5000);
    expect(broker.attempts.map((a) => [a.attempt, a.status, a.result])).toEqual([
      [0, status, 'retryable'],
      [1, 202, 'ok'],
    ]);
    expect(subscriber.received.map((r) => r.headers['ce-id'])).toEqual([e.id, e.id]);
    expect(broker.settlements[0]?.outcome).toBe('delivered');
  });

  it('retries a refused connection, on the next endpoint behind the Service', async () => {
    const live = await startSubscriber();
    const gone = await absentUrl();
    const broker = await deliverer();
    broker.addTrigger({
      url: 'http://worker.coffee.svc',
      endpoints: [gone, live.url],
      delivery: FAST,
    });
    await publish(broker, event());
    await broker.waitForSettled(5000);
    expect(broker.attempts.map((a) => [a.url, a.error, a.result])).toEqual([
      [gone, 'ECONNREFUSED', 'retryable'],
      [live.url, undefined, 'ok'],
    ]);
    expect(live.received).toHaveLength(1);
  });

  it('cuts an attempt at timeoutMs and retries', async () => {
    const subscriber = await startSubscriber((n) => (n === 0 ? 'hang' : { status: 202 }));
    const broker = await deliverer();
    broker.addTrigger({ url: subscriber.url, delivery: { ...FAST, timeoutMs: 150 } });
    await publish(broker, event());
    await broker.waitForSettled(5000);
    const [first, second] = broker.attempts;
    expect(first).toMatchObject({ error: 'timeout', result: 'retryable' });
    expect(first!.endedAt - first!.startedAt).toBeGreaterThanOrEqual(145);
    expect(second).toMatchObject({ status: 202, result: 'ok' });
  });

  it('does not retry a 400, and dead-letters it with the extensions Knative adds', async () => {
    const failure = `{"error":"${'x'.repeat(2000)}"}`;
    const subscriber = await startSubscriber(() => ({
      status: 400,
      body: failure,
      headers: { 'kne-reason': 'invalid', 'kne-Not_Valid': 'dropped' },
    }));
    const dls = await startSubscriber();
    const broker = await deliverer();
    broker.addTrigger({
      url: subscriber.url,
      delivery: { ...FAST, deadLetterSink: dls.url },
    });
    const e = event();
    await publish(broker, e);
    await broker.waitForSettled(5000);

    expect(subscriber.received).toHaveLength(1);
    expect(dls.received).toHaveLength(1);
    const expectedData = Buffer.from(failure).subarray(0, 1024).toString('base64');
    expect(dls.received[0]!.headers).toMatchObject({
      'ce-id': e.id,
      'ce-type': e.type,
      'ce-knativeerrordest': subscriber.url,
      'ce-knativeerrorcode': '400',
      'ce-knativeerrordata': expectedData,
      'ce-reason': 'invalid',
    });
    expect(JSON.parse(dls.received[0]!.body)).toEqual(e.data);
    const settled = broker.settlements[0]!;
    expect(settled.outcome).toBe('deadLettered');
    expect(settled.deadLetter?.knativeerrorcode).toBe('400');
    expect(broker.attempts.map((a) => [a.target, a.status, a.result])).toEqual([
      ['subscriber', 400, 'failed'],
      ['deadLetterSink', 202, 'ok'],
    ]);
  });

  it('dead-letters once retries are exhausted, after retry + 1 attempts', async () => {
    const subscriber = await startSubscriber(() => ({ status: 503, body: 'busy' }));
    const dls = await startSubscriber();
    const broker = await deliverer();
    broker.addTrigger({ url: subscriber.url, delivery: { ...FAST, deadLetterSink: dls.url } });
    await publish(broker, event());
    await broker.waitForSettled(5000);
    expect(subscriber.received).toHaveLength(FAST.retry + 1);
    expect(dls.received[0]!.headers).toMatchObject({
      'ce-knativeerrorcode': '503',
      'ce-knativeerrordata': Buffer.from('busy').toString('base64'),
    });
    expect(broker.settlements[0]?.outcome).toBe('deadLettered');
  });

  it('dead-letters an unreachable subscriber with the destination only', async () => {
    const gone = await absentUrl();
    const dls = await startSubscriber();
    const broker = await deliverer();
    broker.addTrigger({ url: gone, delivery: { ...FAST, retry: 1, deadLetterSink: dls.url } });
    await publish(broker, event());
    await broker.waitForSettled(5000);
    const headers = dls.received[0]!.headers;
    expect(headers['ce-knativeerrordest']).toBe(gone);
    expect(headers['ce-knativeerrorcode']).toBeUndefined();
    expect(headers['ce-knativeerrordata']).toBeUndefined();
  });

  it('counts a 2xx whose body is not a CloudEvent as a failure, not retried', async () => {
    const subscriber = await startSubscriber(() => ({
      status: 200,
      body: '{"ok":true}',
      headers: { 'content-type': 'application/json' },
    }));
    const dls = await startSubscriber();
    const broker = await deliverer();
    broker.addTrigger({ url: subscriber.url, delivery: { ...FAST, deadLetterSink: dls.url } });
    await publish(broker, event());
    await broker.waitForSettled(5000);
    expect(subscriber.received).toHaveLength(1);
    expect(broker.attempts[0]).toMatchObject({ status: 200, result: 'failed' });
    expect(broker.attempts[0]?.error).toMatch(/not a CloudEvent/);
    expect(dls.received[0]!.headers['ce-knativeerrordest']).toBe(subscriber.url);
    expect(broker.settlements[0]?.outcome).toBe('deadLettered');
  });

  it('takes a 2xx that is a CloudEvent as a reply and writes it back to the Broker', async () => {
    const reply = event({ id: 'reply-1', type: 'com.coffeebuddy.done' });
    const subscriber = await startSubscriber(() => {
      const message = HTTP.binary(reply);
      return {
        status: 200,
        body: message.body as string,
        headers: message.headers as Record<string, string>,
      };
    });
    const broker = await deliverer();
    broker.addTrigger({
      url: subscriber.url,
      delivery: FAST,
      filter: (e) => e.type !== 'com.coffeebuddy.done',
    });
    await publish(broker, event());
    await broker.waitForSettled(5000);
    expect(broker.events.map((e) => [e.event.id, e.from])).toEqual([
      [expect.any(String), 'ingress'],
      ['reply-1', 'reply'],
    ]);
    expect(broker.settlements[0]?.outcome).toBe('delivered');
  });

  it('drops a failed event when there is no dead-letter sink, or the sink fails too', async () => {
    const subscriber = await startSubscriber(() => ({ status: 422 }));
    const dls = await startSubscriber(() => ({ status: 500 }));
    const broker = await deliverer();
    broker.addTrigger({ name: 'bare', url: subscriber.url, delivery: FAST });
    broker.addTrigger({
      name: 'dls-broken',
      url: subscriber.url,
      delivery: { ...FAST, retry: 1, deadLetterSink: dls.url },
    });
    await publish(broker, event());
    await broker.waitForSettled(5000);
    expect(broker.settlements.map((s) => [s.trigger, s.outcome]).sort()).toEqual([
      ['bare', 'dropped'],
      ['dls-broken', 'dropped'],
    ]);
    expect(dls.received).toHaveLength(2);
  });

  it.each(['exponential', 'linear'] as const)(
    'waits the %s backoff between attempts',
    async (backoffPolicy) => {
      const subscriber = await startSubscriber(() => ({ status: 500 }));
      const broker = await deliverer();
      const delivery = { ...FAST, backoffPolicy, backoffDelayMs: 20, retry: 3 };
      broker.addTrigger({ url: subscriber.url, delivery });
      await publish(broker, event());
      await broker.waitForSettled(5000);
      const attempts = broker.attempts;
      expect(attempts.map((a) => a.attempt)).toEqual([0, 1, 2, 3]);
      for (let n = 1; n < attempts.length; n += 1) {
        const gap = attempts[n]!.startedAt - attempts[n - 1]!.endedAt;
        // Timers never fire early; the 1 ms allows for Date.now()'s rounding.
        expect(gap).toBeGreaterThanOrEqual(backoffMs(delivery, n) - 1);
      }
      expect(backoffMs(delivery, 3)).toBe(backoffPolicy === 'exponential' ? 160 : 60);
    },
  );

  it('waits a 429’s or 503’s Retry-After, capped at retryAfterMax, when longer than the backoff', async () => {
    const linear = { backoffPolicy: 'linear' as const, backoffDelayMs: 500 };
    const answer = (status: number, retryAfter?: string) => ({
      status,
      headers: retryAfter === undefined ? {} : { 'retry-after': retryAfter },
      body: Buffer.alloc(0),
    });
    // Without retryAfterMax (the feature off), Retry-After is ignored.
    expect(retryWaitMs(linear, 1, answer(429, '3'))).toBe(500);
    const capped = { ...linear, retryAfterMaxMs: 5000 };
    expect(retryWaitMs(capped, 1, answer(429, '3'))).toBe(3000);
    expect(retryWaitMs(capped, 1, answer(503, '60'))).toBe(5000);
    // The backoff when it is longer, and for other statuses, errors or no header.
    expect(retryWaitMs(capped, 8, answer(429, '1'))).toBe(4000);
    expect(retryWaitMs(capped, 1, answer(500, '3'))).toBe(500);
    expect(retryWaitMs(capped, 1, answer(429))).toBe(500);
    expect(retryWaitMs(capped, 1, answer(429, 'soon'))).toBe(500);
    expect(retryWaitMs(capped, 2, { error: 'ECONNRESET' })).toBe(1000);

    const subscriber = await startSubscriber((n) =>
      n === 0 ? { status: 429, headers: { 'Retry-After': '1' } } : { status: 204 },
    );
    const broker = await deliverer();
    broker.addTrigger({
      url: subscriber.url,
      delivery: { ...FAST, backoffDelayMs: 1, retry: 1, retryAfterMaxMs: 200 },
    });
    await publish(broker, event());
    await broker.waitForSettled(5000);
    const [first, second] = broker.attempts;
    expect([first?.status, second?.status]).toEqual([429, 204]);
    // Timers never fire early; the 1 ms allows for Date.now()'s rounding.
    expect(second!.startedAt - first!.endedAt).toBeGreaterThanOrEqual(199);
  });

  it('honours Retry-After on 429 and 503 up to retryAfterMax, as with delivery-retryafter', async () => {
    const subscriber = await startSubscriber((n) =>
      n === 0
        ? { status: 429, headers: { 'Retry-After': '7' } }
        : n === 1
          ? { status: 503, headers: { 'Retry-After': '0' } }
          : { status: 204 },
    );
    const broker = await deliverer();
    // Retry-After: 7 is cut to retryAfterMax (300 ms); Retry-After: 0 leaves the backoff.
    const delivery = { ...FAST, backoffDelayMs: 5, retryAfterMaxMs: 300 };
    broker.addTrigger({ url: subscriber.url, delivery });
    await publish(broker, event());
    await broker.waitForSettled(5000);
    const attempts = broker.attempts;
    expect(attempts.map((a) => [a.status, a.waitMs])).toEqual([
      [429, 300],
      [503, backoffMs(delivery, 2)],
      [204, undefined],
    ]);
    // Timers never fire early; the 1 ms allows for Date.now()'s rounding.
    expect(attempts[1]!.startedAt - attempts[0]!.endedAt).toBeGreaterThanOrEqual(300 - 1);
  });

  it('reads Retry-After as Knative does: seconds or a date, only on 429 and 503, only with retryAfterMax', () => {
    const headers = (value: string) => ({
      status: 429,
      headers: { 'retry-after': value },
      body: Buffer.alloc(0),
    });
    const delivery = {
      backoffPolicy: 'exponential' as const,
      backoffDelayMs: 100,
      retryAfterMaxMs: 60_000,
    };
    expect(retryWaitMs(delivery, 1, headers('7'))).toBe(7000);
    expect(retryWaitMs(delivery, 1, headers('120'))).toBe(60_000);
    expect(retryWaitMs(delivery, 1, headers('nonsense'))).toBe(200);
    expect(retryWaitMs(delivery, 1, { ...headers('7'), status: 500 })).toBe(200);
    expect(retryWaitMs(delivery, 1, { error: 'ECONNRESET' })).toBe(200);
    expect(retryWaitMs({ ...delivery, retryAfterMaxMs: undefined }, 1, headers('7'))).toBe(200);
    expect(retryWaitMs({ ...delivery, retryAfterMaxMs: 0 }, 1, headers('7'))).toBe(200);
    // The backoff wins when it is longer.
    expect(retryWaitMs(delivery, 8, headers('7'))).toBe(25_600);
    const now = Date.parse('2026-12-05T10:00:00Z');
    expect(retryAfterMs('Sat, 05 Dec 2026 10:00:09 GMT', now)).toBe(9000);
    expect(retryAfterMs('Sat, 05 Dec 2026 09:59:00 GMT', now)).toBe(0);
  });

  it('runs at most `concurrency` deliveries at once, and all of them', async () => {
    const subscriber = await startSubscriber(
      () =>
        new Promise<Reply>((resolve) =>
          setTimeout(() => {
            resolve({ status: 202 });
          }, 30),
        ),
    );
    const broker = await deliverer({ concurrency: 2 });
    broker.addTrigger({ url: subscriber.url, delivery: FAST });
    for (let i = 0; i < 6; i += 1) await publish(broker, event());
    await broker.waitForSettled(5000);
    expect(subscriber.received).toHaveLength(6);
    expect(subscriber.maxInFlight).toBe(2);
  });
});

describe('waiting and closing', () => {
  it('rejects waitForSettled with what is still pending, never hangs', async () => {
    const subscriber = await startSubscriber(() => 'hang');
    const broker = await deliverer();
    broker.addTrigger({ url: subscriber.url, delivery: { ...FAST, timeoutMs: 60_000 } });
    const e = event();
    await publish(broker, e);
    await expect(broker.waitForSettled(100)).rejects.toThrow(
      /waited 100 ms for every accepted event to settle: 1 events stored, 1 deliveries unsettled/,
    );
    expect(broker.describe(e.id)).toBe(`${e.id}: no attempts`);
  });

  it('waitFor resolves on the change that makes it true', async () => {
    const subscriber = await startSubscriber(() => ({ status: 500 }));
    const broker = await deliverer();
    broker.addTrigger({ url: subscriber.url, delivery: { ...FAST, retry: 5 } });
    await publish(broker, event());
    await broker.waitFor(() => broker.attempts.length >= 3, 5000, 'three attempts');
    expect(broker.attempts.length).toBeGreaterThanOrEqual(3);
  });

  it('close() stops attempts, backoff waits and waiting callers, and nothing runs after', async () => {
    const hanging = await startSubscriber(() => 'hang');
    const failing = await startSubscriber(() => ({ status: 503 }));
    const broker = await startDeliverer({ ingest: 'accept' });
    broker.addTrigger({ url: hanging.url, delivery: { ...FAST, timeoutMs: 60_000 } });
    broker.addTrigger({
      url: failing.url,
      delivery: { ...FAST, retry: 10, backoffDelayMs: 10_000 },
    });
    await publish(broker, event());
    await broker.waitFor(() => hanging.inFlight === 1 && failing.received.length === 1, 5000);
    const waiting = broker.waitForSettled(60_000);
    await broker.close();
    await expect(waiting).rejects.toThrow(/closed/);
    const attempts = broker.attempts.length;
    expect(await publish(broker, event())).toBe('ECONNREFUSED');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(broker.attempts).toHaveLength(attempts);
    expect(failing.received).toHaveLength(1);
    expect(hanging.inFlight).toBe(0);
    await broker.close();
  });
});
