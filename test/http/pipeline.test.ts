import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import request from 'supertest';
import { frameworkApp } from '../../functions/server';
import { Connections } from '../../lib/http/connections';
import { BODY_ERRORS, Pipeline } from '../../lib/http/pipeline';
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
          sendJson(res, 200, { parsed: req.body });
        },
      },
    ],
    logger,
  );
  const observed: [string, string, number][] = [];
  const connections = new Connections(lifecycle);
  const pipeline: Pipeline = new Pipeline({
    router,
    framework: () => express,
    defaultMaxBodyBytes: 16_384,
    contexts: new RequestContexts('x-request-id'),
    observe: (method, route, status) => observed.push([method, route, status]),
    connections,
    logger,
  });
  const express = frameworkApp(router.invoke);
  express.use(pipeline.errorHandler);
  const server = http.createServer(pipeline.listener);
  connections.attach(server);
  servers.push(server);
  await listenOnLoopback(server);
  return { server, logs, observed, lifecycle, pipeline };
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
  it('counts none left after a refusal with a request pipelined behind it', async () => {
    const { server, lifecycle, observed } = await serve();
    const { port } = server.address() as net.AddressInfo;
    const socket = net.connect(port, '127.0.0.1');
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
    socket.write(
      'POST /parsed HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\n{}' +
        'GET /none HTTP/1.1\r\nHost: x\r\n\r\n',
    );
    await new Promise((resolve) => socket.once('close', resolve));
    expect(received).toMatch(/^HTTP\/1\.1 415 /);
    await eventually(() => lifecycle.inFlight().requests === 0);
    expect(observed[0]).toEqual(['POST', '/parsed', 415]);
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
