import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { CloudEvent, HTTP } from 'cloudevents';
import { frameworkApp } from '../../functions/server';
import type { ReceivedEvent, TakeResult } from '../../lib/eventing/event';
import { eventEndpoints } from '../../lib/eventing/receive';
import type { Authenticate } from '../../lib/eventing/sender-identity';
import { Connections } from '../../lib/http/connections';
import { Pipeline } from '../../lib/http/pipeline';
import { sendJson } from '../../lib/http/respond';
import { Router, type Route } from '../../lib/http/router';
import { Lifecycle } from '../../lib/lifecycle';
import { createLogger } from '../../lib/logger';
import { RequestContexts } from '../../lib/request-context';
import { listenOnLoopback } from '../../testing/server';
import { eventually } from '../../testing/tools';

/**
 * A function Knative Eventing delivers to (eventEndpoints) behind the image's pipeline, with a
 * taker of the test's own: how many deliveries it takes at once, and which events it refuses
 * before they reach the taker.
 */

const servers: http.Server[] = [];
afterEach(async () => {
  await Promise.all(
    servers.splice(0).map((server) => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    }),
  );
});

/** A taker whose every call waits until the test opens it (or at once when `open`). */
function takerFor(open = false) {
  const taken: ReceivedEvent[] = [];
  const waiting: (() => void)[] = [];
  let opened = open;
  const take = async (event: ReceivedEvent): Promise<TakeResult> => {
    taken.push(event);
    if (!opened) await new Promise<void>((resolve) => waiting.push(resolve));
    return { status: 204 };
  };
  const release = () => {
    opened = true;
    for (const wake of waiting.splice(0)) wake();
  };
  return { take, taken, release };
}

async function serve(
  take: (event: ReceivedEvent) => Promise<TakeResult>,
  maxInFlight = 32,
  authenticate?: Authenticate,
) {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger('warn', (line) =>
    lines.push(JSON.parse(line) as Record<string, unknown>),
  );
  const overloaded: (string | undefined)[] = [];
  const invalid: number[] = [];
  const { route } = eventEndpoints('testEvents', take, {
    logger,
    countInvalid: () => invalid.push(1),
    maxBodyBytes: 64 * 1024,
    maxInFlight,
    countOverloaded: (type) => overloaded.push(type),
    ...(authenticate === undefined ? {} : { authenticate }),
  });
  // Beside a probe, as in the worker's app: the event route answers on its own path only.
  const probe: Route = {
    name: 'healthLive',
    path: '/health/live',
    methods: ['GET'],
    handler: (_req, res) => {
      sendJson(res, 200, { status: 'live' });
    },
  };
  const router = new Router([route, probe], logger);
  const connections = new Connections(new Lifecycle());
  const pipeline = new Pipeline({
    router,
    framework: () => frameworkApp(router.invoke),
    defaultMaxBodyBytes: 16_384,
    contexts: new RequestContexts('x-request-id'),
    observe: () => undefined,
    connections,
    logger,
  });
  const server = http.createServer(pipeline.listener);
  connections.attach(server);
  servers.push(server);
  await listenOnLoopback(server);
  const { port } = server.address() as AddressInfo;
  const openConnections = () =>
    new Promise<number>((resolve) => {
      server.getConnections((_, count) => {
        resolve(count);
      });
    });
  return { port, overloaded, invalid, openConnections, lines };
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/**
 * POSTs headers and a body; with `partial`, sends only that many bytes of it and keeps the
 * request open (an upload still under way). `request` is the client request, to destroy.
 */
function send(
  port: number,
  headers: Record<string, string>,
  body: string,
  partial?: number,
  path = '/',
): { answer: Promise<Answer>; request: http.ClientRequest } {
  const request = http.request({
    host: '127.0.0.1',
    port,
    path,
    method: 'POST',
    agent: false,
    headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
  });
  const answer = new Promise<Answer>((resolve, reject) => {
    request.on('response', (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += chunk.toString()));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text });
      });
    });
    request.on('error', reject);
  });
  if (partial === undefined) request.end(body);
  else request.write(body.slice(0, partial));
  return { answer, request };
}

function slackEvent(id: string, extra: Record<string, unknown> = {}): CloudEvent<unknown> {
  return new CloudEvent(
    {
      id,
      source: 'https://slack.com/teams/T0001',
      type: 'com.slack.event.app_mention',
      datacontenttype: 'application/json',
      data: { type: 'event_callback', event_id: id, event: { type: 'app_mention' } },
      ...extra,
    },
    false,
  );
}

const binary = (event: CloudEvent<unknown>) => {
  const { headers, body } = HTTP.binary(event);
  return { headers: headers as Record<string, string>, body: body as string };
};

/** A structured event written by hand: the SDK would refuse to build some of these. */
const structured = (attributes: Record<string, unknown>) => ({
  headers: { 'content-type': 'application/cloudevents+json' },
  body: JSON.stringify({
    specversion: '1.0',
    id: 'Ev1',
    source: 'https://slack.com/teams/T0001',
    type: 'com.slack.event.app_mention',
    data: {},
    ...attributes,
  }),
});

describe('deliveries in flight (EVENT_MAX_IN_FLIGHT)', () => {
  it('takes as many as the limit; the next is refused 429 with Retry-After before its body is read', async () => {
    const taker = takerFor();
    const { port, overloaded } = await serve(taker.take, 2);
    const held = ['Ev1', 'Ev2'].map((id) => {
      const { headers, body } = binary(slackEvent(id));
      return send(port, headers, body).answer;
    });
    await eventually(() => taker.taken.length === 2);

    // Only part of its body sent, the rest never: answered all the same.
    const { headers, body } = binary(slackEvent('Ev3'));
    const refused = await send(port, headers, `${body}${' '.repeat(40_000)}`, 10).answer;
    expect(refused.status).toBe(429);
    expect(refused.headers['retry-after']).toBe('1');
    expect(JSON.parse(refused.body)).toEqual({ error: 'too many requests in flight' });
    expect(overloaded).toEqual(['com.slack.event.app_mention']);
    expect(taker.taken.map((e) => e.id)).toEqual(['Ev1', 'Ev2']);

    taker.release();
    expect((await Promise.all(held)).map((a) => a.status)).toEqual([204, 204]);
    // The places are free again.
    const again = binary(slackEvent('Ev3'));
    expect((await send(port, again.headers, again.body).answer).status).toBe(204);
    expect(overloaded).toHaveLength(1);
  });

  it('counts a refused delivery without a type header as such', async () => {
    const taker = takerFor();
    const { port, overloaded } = await serve(taker.take, 1);
    const first = binary(slackEvent('Ev1'));
    const held = send(port, first.headers, first.body).answer;
    await eventually(() => taker.taken.length === 1);
    const { headers, body } = structured({});
    expect((await send(port, headers, body).answer).status).toBe(429);
    expect(overloaded).toEqual([undefined]);
    taker.release();
    expect((await held).status).toBe(204);
  });

  it('keeps the place of a delivery whose client hung up until its event is no longer being taken', async () => {
    const taker = takerFor();
    const { port, openConnections } = await serve(taker.take, 1);
    const first = binary(slackEvent('Ev1'));
    const gone = send(port, first.headers, first.body);
    gone.answer.catch(() => undefined);
    await eventually(() => taker.taken.length === 1);
    gone.request.destroy();

    const second = binary(slackEvent('Ev2'));
    // The server has seen the client go; the first is still being taken: no room.
    await eventually(async () => (await openConnections()) === 0);
    expect((await send(port, second.headers, second.body).answer).status).toBe(429);
    taker.release();
    await eventually(async () => {
      const answer = await send(port, second.headers, second.body).answer;
      return answer.status === 204;
    });
    expect(taker.taken.map((e) => e.id)).toEqual(['Ev1', 'Ev2']);
  });
});

describe('attributes a receiver refuses (400, never taken)', () => {
  it('a binary event without ce-specversion, which the SDK would take as 1.0', async () => {
    const taker = takerFor(true);
    const { port, invalid, lines } = await serve(taker.take);
    const { headers, body } = binary(slackEvent('Ev1'));
    delete headers['ce-specversion'];
    const answer = await send(port, headers, body).answer;
    expect([answer.status, JSON.parse(answer.body)]).toEqual([
      400,
      { error: 'specversion must be 1.0' },
    ]);
    expect(invalid).toHaveLength(1);
    expect(lines).toEqual([
      expect.objectContaining({
        level: 'warn',
        msg: 'cloudevent refused',
        function: 'testEvents',
        reason: 'specversion must be 1.0',
      }),
    ]);
    // With it, the same event is taken.
    const whole = binary(slackEvent('Ev1'));
    expect((await send(port, whole.headers, whole.body).answer).status).toBe(204);
    expect(taker.taken.map((e) => e.id)).toEqual(['Ev1']);
  });

  it.each([
    ['an id with a NUL', { id: 'Ev\u00001' }, 'id must not hold a NUL or an unpaired surrogate'],
    ['a source with a NUL', { source: 'a\u0000b' }, 'source must not hold a NUL'],
    ['an id with a lone high surrogate', { id: 'Ev\ud8001' }, 'id must not hold a NUL'],
    ['an id with a lone low surrogate', { id: 'Ev\udc001' }, 'id must not hold a NUL'],
    ['an id ending in a high surrogate', { id: 'Ev1\ud800' }, 'id must not hold a NUL'],
    ['a source with a lone surrogate', { source: 'https://x/\udfff' }, 'source must not hold'],
    ['a type with a NUL', { type: 'com.slack.event.a\u0000' }, 'type must not hold a NUL'],
    ['an extension with a NUL', { partitionkey: 'a\u0000' }, 'an extension must not hold'],
  ])('a structured event with %s', async (_, attributes, error) => {
    const taker = takerFor(true);
    const { port, invalid } = await serve(taker.take);
    const { headers, body } = structured(attributes);
    const answer = await send(port, headers, body).answer;
    expect(answer.status).toBe(400);
    expect((JSON.parse(answer.body) as { error: string }).error).toContain(error);
    expect(invalid).toHaveLength(1);
    expect(taker.taken).toEqual([]);
  });

  it('ids differing only in lone surrogates are both refused, so never stored as one', async () => {
    const taker = takerFor(true);
    const { port } = await serve(taker.take);
    for (const id of ['Ev\ud800', 'Ev\udbff', 'Ev\udc00']) {
      const { headers, body } = structured({ id });
      expect((await send(port, headers, body).answer).status).toBe(400);
    }
    expect(taker.taken).toEqual([]);
  });

  it('takes a surrogate pair (a character outside the BMP) as it is', async () => {
    const taker = takerFor(true);
    const { port } = await serve(taker.take);
    const { headers, body } = structured({
      id: 'Ev☕\ud83d\ude00',
      source: 'https://x/\ud83d\ude00',
    });
    expect((await send(port, headers, body).answer).status).toBe(204);
    expect(taker.taken.map((e) => [e.id, e.source])).toEqual([
      ['Ev☕\ud83d\ude00', 'https://x/\ud83d\ude00'],
    ]);
  });
});

describe('the answer Knative reads', () => {
  const answerTo = async (result: TakeResult) => {
    const { port } = await serve(() => Promise.resolve(result));
    const { headers, body } = binary(slackEvent('Ev1'));
    return send(port, headers, body).answer;
  };

  it('204 with no body when taken', async () => {
    const answer = await answerTo({ status: 204 });
    expect([answer.status, answer.body, answer.headers['cache-control']]).toEqual([
      204,
      '',
      'no-store',
    ]);
    expect(answer.headers['content-type']).toBeUndefined();
  });

  it('a refusal’s status with its reason, and Retry-After only when the taker gives one', async () => {
    const busy = await answerTo({ status: 409, error: 'another worker holds this event' });
    expect([busy.status, JSON.parse(busy.body), busy.headers['retry-after']]).toEqual([
      409,
      { error: 'another worker holds this event' },
      undefined,
    ]);
    const limited = await answerTo({ status: 429, error: 'rate limited', retryAfterSeconds: 7 });
    expect([limited.status, limited.headers['retry-after']]).toEqual([429, '7']);
    const bare = await answerTo({ status: 503 });
    expect([bare.status, JSON.parse(bare.body)]).toEqual([503, { error: 'not taken' }]);
  });

  it('answers on its own path only', async () => {
    const taker = takerFor(true);
    const { port } = await serve(taker.take);
    const { headers, body } = binary(slackEvent('Ev1'));
    expect((await send(port, headers, body, undefined, '/other').answer).status).toBe(404);
    expect(taker.taken).toEqual([]);
  });
});

describe('with a sender check (authenticate)', () => {
  const bearerOnly: Authenticate = (req) =>
    Promise.resolve(
      req.headers.authorization === 'Bearer good'
        ? undefined
        : { status: 401, error: 'unauthenticated' },
    );

  it('refuses an unauthenticated delivery before the taker, and it takes no place', async () => {
    const taker = takerFor(true);
    const { port, overloaded } = await serve(taker.take, 1, bearerOnly);
    const { headers, body } = binary(slackEvent('Ev1'));
    for (let i = 0; i < 3; i += 1) {
      const refused = await send(port, headers, body).answer;
      expect([refused.status, JSON.parse(refused.body)]).toEqual([
        401,
        { error: 'unauthenticated' },
      ]);
    }
    expect(taker.taken).toEqual([]);
    expect(overloaded).toEqual([]);
    const good = { ...headers, authorization: 'Bearer good' };
    expect((await send(port, good, body).answer).status).toBe(204);
    expect(taker.taken.map((e) => e.id)).toEqual(['Ev1']);
  });

  it('bounds authenticated deliveries in flight as well', async () => {
    const taker = takerFor();
    const { port, overloaded } = await serve(taker.take, 1, bearerOnly);
    const { headers, body } = binary(slackEvent('Ev1'));
    const good = { ...headers, authorization: 'Bearer good' };
    const first = send(port, good, body).answer;
    await eventually(() => taker.taken.length === 1);
    const second = await send(port, good, body).answer;
    expect([second.status, second.headers['retry-after']]).toEqual([429, '1']);
    expect(overloaded).toEqual(['com.slack.event.app_mention']);
    taker.release();
    expect((await first).status).toBe(204);
  });
});
