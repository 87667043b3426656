import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import request from 'supertest';
import { frameworkApp } from '../../functions/server';
import { Connections } from '../../lib/http/connections';
import { BODY_ERRORS, BODY_READ_TIMEOUT_MS, Pipeline } from '../../lib/http/pipeline';
import { sendJson } from '../../lib/http/respond';
import { Router, type Route } from '../../lib/http/router';
import { Lifecycle } from '../../lib/lifecycle';
import { createLogger } from '../../lib/logger';
import { RequestContexts } from '../../lib/request-context';
import { exchangeRaw, listenOnLoopback } from '../../testing/server';
import { eventually } from '../../testing/tools';

/** The packages whose errors reach the pipeline's error handler: the framework's body parsers. */
const FRAMEWORK = path.dirname(require.resolve('@google-cloud/functions-framework'));
const PARSER_PACKAGES = ['body-parser', 'raw-body', 'qs'];

function sourcesOf(pkg: string): string[] {
  const root = path.dirname(require.resolve(`${pkg}/package.json`, { paths: [FRAMEWORK] }));
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory() && entry.name !== 'node_modules' && entry.name !== 'test') walk(full);
      else if (entry.name.endsWith('.js')) files.push(fs.readFileSync(full, 'utf8'));
    }
  };
  walk(root);
  return files;
}

const servers: http.Server[] = [];
afterEach(async () => {
  await Promise.all(
    servers.splice(0).map((server) => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    }),
  );
});

/**
 * The pipeline in front of the framework's Express app, with one route of each body handling:
 * `/parsed` answers what the framework parsed, `/raw` the bytes it was handed, `/none` nothing.
 */
async function serve(admit?: Route['admit']) {
  const logs: Record<string, unknown>[] = [];
  const logger = createLogger('debug', (line) =>
    logs.push(JSON.parse(line) as Record<string, unknown>),
  );
  const lifecycle = new Lifecycle();
  const router = new Router(
    [
      {
        name: 'parsed',
        path: '/parsed',
        methods: ['POST'],
        body: 'parsed',
        handler: (req, res) => {
          sendJson(res, 200, { body: req.body });
        },
      },
      {
        name: 'raw',
        path: '/raw',
        methods: ['POST'],
        body: 'raw',
        handler: (req, res) => {
          sendJson(res, 200, { raw: req.rawBody?.toString(), parsed: req.body });
        },
      },
      {
        name: 'guarded',
        path: '/guarded',
        methods: ['POST'],
        body: 'raw',
        ...(admit === undefined ? {} : { admit }),
        handler: (req, res) => {
          sendJson(res, 200, { raw: req.rawBody?.toString() });
        },
      },
      {
        name: 'none',
        path: '/none',
        methods: ['GET'],
        handler: (req, res) => {
          sendJson(res, 200, { parsed: req.body, raw: req.rawBody?.toString() });
        },
      },
      {
        name: 'small',
        path: '/small',
        methods: ['POST'],
        body: 'raw',
        maxBodyBytes: 10,
        handler: (req, res) => {
          sendJson(res, 200, { raw: req.rawBody?.toString() });
        },
      },
      {
        name: 'streaming',
        path: '/streaming',
        methods: ['POST'],
        body: 'parsed',
        // Begins its answer at once and ends it when the test says.
        handler: (_req, res) => {
          res.writeHead(200);
          res.write('started');
          held.push(res);
        },
      },
      {
        name: 'held',
        path: '/held',
        methods: ['GET'],
        // Answered when the test says: requests pile up on their connection meanwhile.
        handler: (_req, res) => {
          held.push(res);
        },
      },
    ],
    logger,
  );
  const held: http.ServerResponse[] = [];
  const observed: [string, string, number][] = [];
  const timings: { seconds: number; requestId: string }[] = [];
  const connections = new Connections(lifecycle);
  const pipeline: Pipeline = new Pipeline({
    router,
    framework: () => express,
    defaultMaxBodyBytes: 16_384,
    contexts: new RequestContexts('x-request-id'),
    observe: (method, route, status, seconds, context) => {
      observed.push([method, route, status]);
      timings.push({ seconds, requestId: context.requestId });
    },
    connections,
    logger,
  });
  const express = frameworkApp(router.invoke);
  express.use(pipeline.errorHandler);
  const server = http.createServer(pipeline.listener);
  server.on('checkContinue', pipeline.continueListener);
  connections.attach(server);
  servers.push(server);
  await listenOnLoopback(server);
  const { port } = server.address() as net.AddressInfo;
  return { server, port, logs, observed, timings, lifecycle, pipeline, held };
}

/**
 * A raw client connection: what it has received so far, whether the server has closed it, and a
 * wait for either (by I/O events only, never a timer, so that it works under fake timers too).
 */
function rawClient(port: number) {
  // Half open, as a client that goes on sending after the server's FIN.
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  clients.push(socket);
  const state = { received: '', ended: false, closed: false };
  const waiters: (() => void)[] = [];
  const wake = () => {
    for (const waiter of waiters.splice(0)) waiter();
  };
  socket.on('data', (chunk: Buffer) => {
    state.received += chunk.toString('latin1');
    wake();
  });
  socket.on('error', () => undefined);
  socket.on('end', () => {
    state.ended = true;
    wake();
  });
  socket.on('close', () => {
    state.closed = true;
    wake();
  });
  const until = async (condition: () => boolean): Promise<void> => {
    while (!condition()) {
      if (state.closed) throw new Error(`closed before expected; received: ${state.received}`);
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
  };
  return {
    socket,
    state,
    until,
    /** Resolves once `count` answers' status lines have arrived. */
    answers: async (count: number) => {
      await until(() => (state.received.match(/HTTP\/1\.1 [2-5]\d\d /g) ?? []).length >= count);
      return state.received.match(/HTTP\/1\.1 \d{3} /g)!.map((line) => Number(line.slice(9, 12)));
    },
    /** Resolves once the server has ended its side, or the connection is gone. */
    ended: () => until(() => state.ended || state.closed).catch(() => undefined),
    /** Resolves once the connection is gone: both sides ended, or the server cut it. */
    closed: () =>
      state.closed
        ? Promise.resolve()
        : new Promise<void>((resolve) =>
            socket.once('close', () => {
              resolve();
            }),
          ),
  };
}

const clients: net.Socket[] = [];
afterEach(() => {
  for (const socket of clients.splice(0)) socket.destroy();
});

/** Turns of I/O, by setImmediate only: for waiting while timers are fake. */
async function turns(count: number): Promise<void> {
  for (let i = 0; i < count; i += 1) await new Promise((resolve) => setImmediate(resolve));
}

describe('the pipeline’s answers to body-parser errors', () => {
  it('maps every error type the framework’s parsers can raise, each to a 4xx', () => {
    const raised = new Set<string>();
    for (const pkg of PARSER_PACKAGES) {
      for (const source of sourcesOf(pkg)) {
        for (const match of source.matchAll(
          /'((?:entity|request|stream|charset|encoding|parameters|querystring)\.[a-zA-Z.]+)'/g,
        )) {
          raised.add(match[1]!);
        }
      }
    }
    // body-parser 2 raises ten types and qs its depth error; a new one must be mapped here.
    expect(raised.size).toBeGreaterThanOrEqual(11);
    for (const type of raised) {
      expect([type, BODY_ERRORS[type]?.status]).toEqual([type, expect.any(Number)]);
      expect(BODY_ERRORS[type]!.status).toBeGreaterThanOrEqual(400);
      expect(BODY_ERRORS[type]!.status).toBeLessThan(500);
    }
  });

  it.each<[string, string, string, number, string]>([
    ['malformed JSON', 'application/json', '{"a":', 400, 'malformed body'],
    ['an unknown charset', 'application/json; charset=x-nope', '{}', 415, 'unsupported charset'],
    [
      'over 1,000 form fields',
      'application/x-www-form-urlencoded',
      'a=&'.repeat(1001),
      413,
      'too many parameters',
    ],
    [
      'a form nested past 32 levels',
      'application/x-www-form-urlencoded',
      `a${'[b]'.repeat(40)}=1`,
      413,
      'form nested too deeply',
    ],
  ])(
    'on a parsed route, answers %s in JSON, logged once and recorded once',
    async (_name, type, body, status, error) => {
      const { server, logs, observed } = await serve();
      const res = await request(server).post('/parsed').set('Content-Type', type).send(body);
      expect([res.status, res.body]).toEqual([status, { error }]);
      expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
      expect(logs.filter((line) => line.msg === 'request refused')).toHaveLength(1);
      expect(observed).toEqual([['POST', '/parsed', status]]);
    },
  );

  it('answers an error of no known type 500, never 4xx, and logs it as an error', async () => {
    const { pipeline, logs } = await serve();
    const server = http.createServer((req, res) => {
      pipeline.errorHandler(new Error('secret detail'), req, res, () => undefined);
    });
    servers.push(server);
    await listenOnLoopback(server);
    const res = await request(server).get('/parsed');
    expect([res.status, res.body]).toEqual([500, { error: 'internal error' }]);
    expect(logs).toEqual([
      expect.objectContaining({ level: 'error', msg: 'request refused', status: 500 }),
    ]);
    expect(JSON.stringify(logs)).not.toContain('secret detail');
  });
});

describe('what the pipeline does with bodies before the handler', () => {
  it('hands a raw route its bytes unparsed, and the framework parses none of them', async () => {
    const { server } = await serve();
    const res = await request(server)
      .post('/raw')
      .set('Content-Type', 'application/json')
      .send('{"a":[1,2]}');
    expect(res.body).toEqual({ raw: '{"a":[1,2]}' });
  });

  it('reads a chunked raw body within the limit and refuses one past it', async () => {
    const { server } = await serve();
    const { port } = server.address() as net.AddressInfo;
    const chunked = (body: string) =>
      `POST /raw HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n` +
      `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;
    expect(await exchangeRaw(port, chunked('x'))).toMatch(/^HTTP\/1\.1 200 [^]*\{"raw":"x"\}$/);
    expect(await exchangeRaw(port, chunked('x'.repeat(20_000)))).toMatch(
      /^HTTP\/1\.1 413 [^]*\{"error":"request too large"\}$/,
    );
  });

  it('drops a body sent to a route that takes none, unparsed', async () => {
    const { server } = await serve();
    const res = await request(server)
      .get('/none')
      .set('Content-Type', 'application/json')
      .send('{"a":1}');
    expect(res.body).toEqual({});
  });

  it('refuses compressed bodies before reading them', async () => {
    const { server, logs } = await serve();
    const res = await request(server)
      .post('/parsed')
      .set('Content-Encoding', 'gzip')
      .set('Content-Type', 'application/json')
      .send('{}');
    expect([res.status, res.body]).toEqual([415, { error: 'unsupported content encoding' }]);
    expect(logs).toEqual([expect.objectContaining({ msg: 'request refused', status: 415 })]);
  });
});

describe('requests in flight', () => {
  it('counts none left after a refusal with a request pipelined behind it, and never runs that one', async () => {
    const { server, lifecycle, observed, held } = await serve();
    const { port } = server.address() as net.AddressInfo;
    const socket = net.connect(port, '127.0.0.1');
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
    socket.write(
      'POST /parsed HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\n{}' +
        'GET /held HTTP/1.1\r\nHost: x\r\n\r\n',
    );
    await new Promise((resolve) => socket.once('close', resolve));
    expect(received).toMatch(/^HTTP\/1\.1 415 /);
    await eventually(() => lifecycle.inFlight().requests === 0);
    // The request behind the refusal is never run: its answer could not be sent.
    expect(observed).toEqual([['POST', '/parsed', 415]]);
    expect(received.match(/HTTP\/1\.1 /g)).toHaveLength(1);
    expect(held).toEqual([]);
  });
});

describe('a route’s admission, before the body', () => {
  it('answers a refusal without waiting for a byte of the body, and closes the connection', async () => {
    const asked: string[] = [];
    const { server, logs } = await serve((req) => {
      asked.push(String(req.headers.authorization));
      return Promise.resolve({ status: 401, error: 'unauthenticated' });
    });
    const { port } = server.address() as net.AddressInfo;
    // The headers promise ten bytes that never come: only an answer given before reading them ends this.
    const answer = await exchangeRaw(
      port,
      'POST /guarded HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer x\r\nContent-Length: 10\r\n\r\n',
    );
    expect(answer).toMatch(/^HTTP\/1\.1 401 /);
    expect(answer).toMatch(/connection: close/i);
    expect(answer).toContain('{"error":"unauthenticated"}');
    expect(asked).toEqual(['Bearer x']);
    expect(logs).toEqual([
      expect.objectContaining({ msg: 'request refused', status: 401, reason: 'unauthenticated' }),
    ]);
  });

  it('reads the body and runs the handler once admitted, and lets admission release on close', async () => {
    let held = 0;
    const { server } = await serve((_req, res) => {
      held += 1;
      res.once('close', () => (held -= 1));
      return undefined;
    });
    const res = await request(server).post('/guarded').type('text').send('hello');
    expect([res.status, res.body]).toEqual([200, { raw: 'hello' }]);
    await eventually(() => held === 0);
  });

  it('answers 500 when admission itself fails, naming no internals', async () => {
    const { server, logs } = await serve(() => {
      throw new TypeError('secret detail');
    });
    const res = await request(server).post('/guarded').type('text').send('hello');
    expect([res.status, res.body]).toEqual([500, { error: 'internal error' }]);
    expect(JSON.stringify(logs)).not.toContain('secret detail');
    expect(logs).toContainEqual(
      expect.objectContaining({ msg: 'request admission failed', error: 'TypeError' }),
    );
  });
});

describe('what the pipeline records of each request', () => {
  it('observes each answer once: method, route label, status, the seconds it took, its context', async () => {
    const { server, observed, timings } = await serve();
    const before = process.hrtime.bigint();
    const res = await request(server).post('/raw').type('text').send('hello');
    const took = Number(process.hrtime.bigint() - before) / 1e9;
    expect(res.status).toBe(200);
    expect(observed).toEqual([['POST', '/raw', 200]]);
    expect(timings[0]!.seconds).toBeGreaterThan(0);
    expect(timings[0]!.seconds).toBeLessThanOrEqual(took);
    expect(timings[0]!.requestId).toBe(res.headers['x-request-id']);
  });

  it('labels a path no route serves as unmatched, and answers it 404', async () => {
    const { server, observed } = await serve();
    const res = await request(server).get('/nope?x=1');
    expect([res.status, res.body]).toEqual([404, { error: 'not found' }]);
    const query = await request(server).get('/none?x=/held');
    expect(query.status).toBe(200);
    expect(observed).toEqual([
      ['GET', 'unmatched', 404],
      ['GET', '/none', 200],
    ]);
  });

  it('keeps the connection after 404 and 405: no body was left unread', async () => {
    const { port } = await serve();
    const client = rawClient(port);
    client.socket.write(
      'GET /nope HTTP/1.1\r\nHost: x\r\n\r\n' +
        'POST /none HTTP/1.1\r\nHost: x\r\n\r\n' +
        'GET /none HTTP/1.1\r\nHost: x\r\n\r\n',
    );
    expect(await client.answers(3)).toEqual([404, 405, 200]);
    expect(client.state.received).not.toMatch(/connection: close/i);
    expect(client.state.closed).toBe(false);
  });
});

describe('the error handler', () => {
  const EXPECTED: Record<string, [number, string]> = {
    'entity.parse.failed': [400, 'malformed body'],
    'entity.verify.failed': [400, 'malformed body'],
    'entity.too.large': [413, 'request too large'],
    'parameters.too.many': [413, 'too many parameters'],
    'querystring.parse.rangeError': [413, 'form nested too deeply'],
    'charset.unsupported': [415, 'unsupported charset'],
    'encoding.unsupported': [415, 'unsupported content encoding'],
    'request.aborted': [400, 'request aborted'],
    'request.size.invalid': [400, 'request size did not match content length'],
    'stream.encoding.set': [400, 'malformed body'],
    'stream.not.readable': [400, 'malformed body'],
  };

  /** A server whose every request is an error of `error()` handed to the pipeline's handler. */
  async function failing(error: (req: http.IncomingMessage) => unknown) {
    const served = await serve();
    const server = http.createServer((req, res) => {
      served.pipeline.errorHandler(error(req), req, res, () => undefined);
    });
    servers.push(server);
    await listenOnLoopback(server);
    return { ...served, server };
  }

  it('answers each parser error type with its status and text, logged with the type', async () => {
    expect(Object.keys(BODY_ERRORS).sort()).toEqual(Object.keys(EXPECTED).sort());
    const { server, logs } = await failing((req) => ({
      type: new URL(req.url ?? '/', 'http://x').searchParams.get('type'),
    }));
    for (const [type, [status, error]] of Object.entries(EXPECTED)) {
      const res = await request(server).post(`/parsed?type=${type}`);
      expect([type, res.status, res.body]).toEqual([type, status, { error }]);
      expect(logs.pop()).toEqual(
        expect.objectContaining({
          level: 'warn',
          msg: 'request refused',
          method: 'POST',
          route: '/parsed',
          status,
          reason: type,
        }),
      );
    }
  });

  it('answers 500 for an error with a type that is no string, or no error at all', async () => {
    const { server, logs } = await failing((req) =>
      req.url === '/null' ? null : { type: ['entity.too.large'] },
    );
    for (const path of ['/parsed', '/null']) {
      const res = await request(server).post(path);
      expect([path, res.status, res.body]).toEqual([path, 500, { error: 'internal error' }]);
    }
    expect(logs).toEqual([
      expect.objectContaining({ level: 'error', route: '/parsed', reason: 'internal error' }),
      expect.objectContaining({ level: 'error', route: 'unmatched', reason: 'internal error' }),
    ]);
  });

  it('neither answers nor logs once the answer has begun', async () => {
    const { pipeline, logs } = await serve();
    const server = http.createServer((req, res) => {
      res.writeHead(200);
      res.write('partial');
      pipeline.errorHandler({ type: 'request.aborted' }, req, res, () => undefined);
      res.end();
    });
    servers.push(server);
    await listenOnLoopback(server);
    const res = await request(server)
      .get('/parsed')
      .buffer(true)
      .parse((r, done) => {
        let text = '';
        r.on('data', (chunk: Buffer) => (text += chunk.toString()));
        r.on('end', () => {
          done(null, text);
        });
      });
    expect([res.status, res.body]).toEqual([200, 'partial']);
    expect(logs).toEqual([]);
  });
});

describe('body limits and codings, from the headers', () => {
  it('takes a body of exactly the route’s own limit and refuses a longer one before reading it', async () => {
    const { server, port, logs } = await serve();
    const exact = await request(server).post('/small').type('text').send('x'.repeat(10));
    expect([exact.status, exact.body]).toEqual([200, { raw: 'x'.repeat(10) }]);
    const answer = await exchangeRaw(
      port,
      'POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n',
    );
    expect(answer).toMatch(/^HTTP\/1\.1 413 [^]*\{"error":"request too large"\}$/);
    expect(answer).toMatch(/connection: close/i);
    expect(logs).toEqual([
      expect.objectContaining({ level: 'warn', route: '/small', status: 413 }),
    ]);
  });

  it('takes a body of exactly the server’s default limit on a route without its own', async () => {
    const { server, port } = await serve();
    const exact = await request(server).post('/raw').type('text').send('x'.repeat(16_384));
    expect(exact.status).toBe(200);
    const answer = await exchangeRaw(
      port,
      'POST /raw HTTP/1.1\r\nHost: x\r\nContent-Length: 16385\r\n\r\n',
    );
    expect(answer).toMatch(/^HTTP\/1\.1 413 /);
  });

  it('counts a chunked body the framework parses, up to exactly the limit', async () => {
    const { port } = await serve();
    const chunked = (json: string) =>
      'POST /parsed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
      `Transfer-Encoding: chunked\r\n\r\n${json.length.toString(16)}\r\n${json}\r\n0\r\n\r\n`;
    const json = (length: number) => `{"a":"${'x'.repeat(length - 8)}"}`;
    expect(await exchangeRaw(port, chunked(json(16_384)))).toMatch(/^HTTP\/1\.1 200 /);
    const over = await exchangeRaw(port, chunked(json(16_385)));
    expect(over).toMatch(/^HTTP\/1\.1 413 [^]*\{"error":"request too large"\}$/);
    expect(over).toMatch(/connection: close/i);
  });

  it('cuts the connection when a body the framework left unread passes the limit mid-answer', async () => {
    const { port, held } = await serve();
    const client = rawClient(port);
    // Without a Content-Type no parser of the framework's reads the body: the route answers first.
    client.socket.write(
      'POST /streaming HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n',
    );
    await client.until(() => client.state.received.includes('started'));
    expect(client.state.received).toMatch(/^HTTP\/1\.1 200 /);
    const more = 'x'.repeat(20_000);
    client.socket.write(`${more.length.toString(16)}\r\n${more}\r\n`);
    await client.ended();
    expect(held).toHaveLength(1);
    expect(held[0]!.destroyed).toBe(true);
  });

  it.each(['identity', 'IDENTITY', '', '  Identity  '])(
    'takes a body whose Content-Encoding is "%s"',
    async (coding) => {
      const { port } = await serve();
      const answer = await exchangeRaw(
        port,
        `POST /raw HTTP/1.1\r\nHost: x\r\nContent-Encoding: ${coding}\r\nContent-Length: 2\r\n\r\nhi`,
      );
      expect(answer).toMatch(/^HTTP\/1\.1 200 [^]*\{"raw":"hi"\}$/);
    },
  );

  it('refuses a transfer coding other than chunked, and takes chunked in any case', async () => {
    const { port, logs } = await serve();
    const refused = await exchangeRaw(
      port,
      'POST /raw HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n',
    );
    expect(refused).toMatch(/^HTTP\/1\.1 415 [^]*\{"error":"unsupported transfer encoding"\}$/);
    expect(logs).toEqual([
      expect.objectContaining({
        route: '/raw',
        status: 415,
        reason: 'unsupported transfer encoding',
      }),
    ]);
    const taken = await exchangeRaw(
      port,
      'POST /raw HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:  CHUNKED \r\n\r\n2\r\nhi\r\n0\r\n\r\n',
    );
    expect(taken).toMatch(/^HTTP\/1\.1 200 [^]*\{"raw":"hi"\}$/);
  });

  it('hands a raw route sent no body none', async () => {
    const { server } = await serve();
    const res = await request(server).post('/raw');
    expect([res.status, res.body]).toEqual([200, {}]);
  });

  it('answers nothing and logs no refusal when the client goes before its body is in', async () => {
    const { port, logs, lifecycle, observed } = await serve();
    const client = rawClient(port);
    client.socket.write('POST /raw HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhalf');
    await eventually(() => lifecycle.inFlight().requests === 1);
    client.socket.destroy();
    await eventually(() => lifecycle.inFlight().requests === 0);
    await turns(10);
    expect(logs).toEqual([]);
    expect(observed).toEqual([]);
  });
});

describe('Expect: 100-continue', () => {
  it('tells the client to go on once the request is accepted, then reads the body', async () => {
    const { port } = await serve();
    const client = rawClient(port);
    client.socket.write(
      'POST /raw HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n',
    );
    await client.until(() => client.state.received.includes('\r\n\r\n'));
    expect(client.state.received).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\n$/);
    client.socket.write('hi');
    await client.until(() => client.state.received.endsWith('{"raw":"hi"}'));
  });

  it('refuses without a 100 Continue a request it will not take', async () => {
    const { port } = await serve();
    const answer = await exchangeRaw(
      port,
      'POST /raw HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Encoding: gzip\r\n' +
        'Content-Length: 2\r\n\r\n',
    );
    expect(answer).toMatch(/^HTTP\/1\.1 415 /);
    expect(answer).not.toContain('100 Continue');
  });
});

describe('requests pipelined on one connection', () => {
  it('answers 16 at once and refuses the 17th with 429, closing the connection after it', async () => {
    const { port, held, logs } = await serve();
    const client = rawClient(port);
    client.socket.write('GET /held HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(17));
    await eventually(() => held.length === 16 && logs.length === 1);
    for (const res of held) sendJson(res, 200, {});
    expect(await client.answers(17)).toEqual([...Array.from({ length: 16 }, () => 200), 429]);
    expect(client.state.received).toMatch(
      /connection: close[^]*\{"error":"too many requests on one connection"\}$/i,
    );
    await client.ended();
    expect(logs).toEqual([
      expect.objectContaining({
        route: '/held',
        status: 429,
        reason: 'too many requests on one connection',
      }),
    ]);
  });
});

/**
 * Runs `test` with Node's timers faked, so that none fires unless the test advances it; I/O,
 * ticks and immediates still run.
 */
async function withoutTimers(test: () => Promise<void>): Promise<void> {
  jest.useFakeTimers({
    doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask', 'hrtime', 'Date'],
  });
  try {
    await test();
  } finally {
    jest.useRealTimers();
  }
}

describe('a refusal with the body still coming', () => {
  it('keeps reading what the client sends after the answer, and closes when the client is done', async () => {
    const { port } = await serve();
    const client = rawClient(port);
    client.socket.write(
      'POST /raw HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: 100000\r\n\r\n',
    );
    expect(await client.answers(1)).toEqual([415]);
    await new Promise<void>((resolve) =>
      client.socket.write('x'.repeat(50_000), () => {
        resolve();
      }),
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(client.state.closed).toBe(false);
    client.socket.end();
    await client.closed();
  });

  it('closes as soon as the client has ended, without waiting out the linger', () =>
    withoutTimers(async () => {
      const { port } = await serve();
      const client = rawClient(port);
      client.socket.write(
        'POST /raw HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: 100000\r\n\r\n',
      );
      expect(await client.answers(1)).toEqual([415]);
      client.socket.end('x'.repeat(1000));
      await client.closed();
    }));

  it('closes once more than 64 MiB has come, however soon', () =>
    withoutTimers(async () => {
      const { port } = await serve();
      const client = rawClient(port);
      client.socket.write(
        'POST /raw HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n' +
          `Content-Length: ${128 * 1024 * 1024}\r\n\r\n`,
      );
      expect(await client.answers(1)).toEqual([415]);
      const chunk = Buffer.alloc(1024 * 1024);
      let sent = 0;
      // The server ended its side with the answer; it cuts the connection past 64 MiB, after
      // which writes fail and the connection closes (the kernel may take a few MiB more first).
      while (!client.state.closed && sent <= 96 * 1024 * 1024) {
        const flushed = client.socket.write(chunk);
        sent += chunk.length;
        if (!flushed) {
          await new Promise<void>((resolve) => {
            const done = () => {
              client.socket.off('drain', done).off('close', done);
              resolve();
            };
            client.socket.on('drain', done).on('close', done);
          });
        }
      }
      expect(client.state.closed).toBe(true);
      expect(sent).toBeGreaterThan(64 * 1024 * 1024 - chunk.length);
    }));

  it('answers 408 to a body that does not arrive within BODY_READ_TIMEOUT_MS', () =>
    withoutTimers(async () => {
      const { port, lifecycle, logs } = await serve();
      const client = rawClient(port);
      client.socket.write('POST /raw HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf');
      while (lifecycle.inFlight().requests === 0) await turns(1);
      await turns(10);
      jest.advanceTimersByTime(BODY_READ_TIMEOUT_MS - 1);
      await turns(10);
      expect(client.state.received).toBe('');
      jest.advanceTimersByTime(1);
      expect(await client.answers(1)).toEqual([408]);
      expect(client.state.received).toMatch(/\{"error":"request timeout"\}$/);
      expect(logs).toEqual([expect.objectContaining({ route: '/raw', status: 408 })]);
    }));
});

describe('an admission refusal once the body is in', () => {
  it('keeps the connection: nothing is left unread', async () => {
    // Refused a while later: by then the small body has been parsed along with the headers.
    const { port } = await serve(
      () =>
        new Promise((resolve) =>
          setTimeout(() => {
            resolve({ status: 401, error: 'unauthenticated' });
          }, 50),
        ),
    );
    const client = rawClient(port);
    client.socket.write(
      'POST /guarded HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi' +
        'GET /none HTTP/1.1\r\nHost: x\r\n\r\n',
    );
    expect(await client.answers(2)).toEqual([401, 200]);
    expect(client.state.received).not.toMatch(/connection: close/i);
  });
});
