import net from 'node:net';
import zlib from 'node:zlib';
import { signSlackRequest } from '../../lib/slack/signature';
import { peakRssKb, rssKb } from '../../testing/proc';
import { metricValue } from '../../testing/metrics-text';
import { requireBuild, startCoffeebuddy, type RunningProcess } from '../../testing/process';
import {
  startOryStandIn,
  startVaultStandIn,
  type OryStandIn,
  type VaultStandIn,
} from '../../testing/standins';
import { eventually } from '../../testing/tools';
import { SYSTEM_TOLERANCE_MS } from './tolerance';

/**
 * CoffeeBuddy's HTTP edge, black-box against the production entry: what is refused before any
 * body byte is read, how errors read, how long connections live.
 */

const MB = 1024 * 1024;
const CANARY = 'edge-body-canary-51c9';

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** Milliseconds from the first byte sent to the answer's head. */
  ms: number;
}

/** Parses one HTTP/1.1 answer with a Content-Length out of `text`, if complete. */
function parseAnswer(text: string): Omit<RawAnswer, 'ms'> | undefined {
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const [statusLine = '', ...lines] = text.slice(0, end).split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  const length = Number(headers['content-length'] ?? 0);
  const body = text.slice(end + 4);
  if (Buffer.byteLength(body, 'latin1') < length) return undefined;
  return { status: Number(statusLine.split(' ')[1]), headers, body: body.slice(0, length) };
}

/**
 * Sends raw bytes on a connection (opened here, or given and left open) and reads one answer.
 * `rest` is written after the head, as long as the server reads it.
 */
function exchange(
  port: number,
  head: string | Buffer,
  options: { socket?: net.Socket; rest?: Buffer[]; timeoutMs?: number } = {},
): Promise<RawAnswer & { socket: net.Socket }> {
  return new Promise((resolve, reject) => {
    const socket = options.socket ?? net.connect(port, '127.0.0.1');
    let text = '';
    const started = performance.now();
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${options.timeoutMs ?? 10_000} ms: ${text}`));
    }, options.timeoutMs ?? 10_000);
    const onData = (data: Buffer) => {
      text += data.toString('latin1');
      const answer = parseAnswer(text);
      if (answer === undefined) return;
      clearTimeout(timer);
      socket.off('data', onData);
      resolve({ ...answer, ms: performance.now() - started, socket });
    };
    socket.on('data', onData);
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.write(head);
    for (const chunk of options.rest ?? []) socket.write(chunk, () => undefined);
  });
}

const requestText =
  (method: string) =>
  (path: string, headers: Record<string, string | number>, body = '') =>
    `${method} ${path} HTTP/1.1\r\nHost: coffeebuddy\r\n${Object.entries(headers)
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join('')}\r\n${body}`;
const post = requestText('POST');
const get = requestText('GET');

async function scrape(port: number): Promise<string> {
  return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
}

/** POSTs to `route` answered with `code`: 0 until the first is. */
function counted(metrics: string, route: string, code: number): number {
  const labels = { method: 'POST', route, status: String(code) };
  return metricValue(metrics, 'coffeebuddy_http_requests_total', labels) ?? 0;
}

describe('the HTTP edge of the production entry', () => {
  let vault: VaultStandIn;
  let ory: OryStandIn;
  let server: RunningProcess;

  beforeAll(async () => {
    requireBuild();
    vault = await startVaultStandIn();
    ory = await startOryStandIn();
    // development mode: even there no stack trace may reach a response.
    server = await startCoffeebuddy(vault.url, ory.url, {
      NODE_ENV: 'development',
      SLACK_SIGNING_SECRET: 'edge-test-secret',
      SLACK_MAX_BODY_BYTES: '4096',
    });
  });
  afterAll(async () => {
    await server.stop();
    await Promise.all([vault.close(), ory.close()]);
  });
  afterEach(async () => {
    expect(server.child.exitCode).toBeNull();
    expect((await fetch(`${server.url}/health/live`)).status).toBe(200);
  });

  describe('compressed bodies are refused before they are read', () => {
    const inflated = Buffer.alloc(256 * MB, ' ');
    inflated.write('{"a":"');
    const bombs: [string, Buffer][] = [
      ['gzip', zlib.gzipSync(inflated, { level: 9 })],
      ['deflate', zlib.deflateSync(inflated, { level: 9 })],
      [
        'br',
        zlib.brotliCompressSync(inflated, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 5 } }),
      ],
    ];

    it.each(bombs)(
      '%s bombs of 256 MB, four at a time, answered 415 with peak RSS within 50 MB',
      async (encoding, bomb) => {
        const before = rssKb(server.child.pid!) / 1024;
        for (let round = 0; round < 3; round += 1) {
          const answers = await Promise.all(
            Array.from({ length: 4 }, () =>
              exchange(
                server.port,
                post('/slack/events', {
                  'Content-Type': 'application/json',
                  'Content-Encoding': encoding,
                  'Content-Length': bomb.length,
                }),
                { rest: [bomb] },
              ),
            ),
          );
          for (const answer of answers) {
            expect(answer.status).toBe(415);
            expect(JSON.parse(answer.body)).toEqual({ error: 'unsupported content encoding' });
            answer.socket.destroy();
          }
        }
        expect(peakRssKb(server.child.pid!) / 1024).toBeLessThan(before + 50);
      },
    );

    it('refuses any encoding but identity, chunked bodies too, and accepts identity', async () => {
      for (const encoding of ['zstd', 'x-gzip', 'GZIP', 'gzip, identity']) {
        const answer = await exchange(
          server.port,
          post('/slack/commands', { 'Content-Encoding': encoding, 'Transfer-Encoding': 'chunked' }),
          { rest: [Buffer.from('5\r\nhello\r\n0\r\n\r\n')] },
        );
        expect([encoding, answer.status]).toEqual([encoding, 415]);
        answer.socket.destroy();
      }
      const identity = await exchange(
        server.port,
        post('/slack/commands', { 'Content-Encoding': 'identity', 'Content-Length': 3 }, 'a=b'),
      );
      expect(identity.status).toBe(401);
      identity.socket.destroy();
    });
  });

  describe('bodies over the route’s limit', () => {
    it('a 50 MB Content-Length with 1 KB sent is answered 413 at once', async () => {
      const answer = await exchange(
        server.port,
        post('/slack/events', { 'Content-Type': 'application/json', 'Content-Length': 50 * MB }),
        { rest: [Buffer.alloc(1024, 'x')] },
      );
      expect(answer.status).toBe(413);
      expect(answer.headers.connection).toBe('close');
      expect(JSON.parse(answer.body)).toEqual({ error: 'request too large' });
      expect(answer.ms).toBeLessThan(SYSTEM_TOLERANCE_MS);
      answer.socket.destroy();
    });

    it('the 413 reaches a client that keeps sending its 30 MB body at full speed', async () => {
      for (let i = 0; i < 5; i += 1) {
        const answer = await exchange(
          server.port,
          post('/slack/events', { 'Content-Type': 'application/json', 'Content-Length': 30 * MB }),
          { rest: Array.from({ length: 30 }, () => Buffer.alloc(MB, 'x')) },
        );
        expect(answer.status).toBe(413);
        answer.socket.destroy();
      }
    });

    it('limits Slack routes by SLACK_MAX_BODY_BYTES and others by MAX_BODY_BYTES', async () => {
      const slack = await exchange(
        server.port,
        post('/slack/events', { 'Content-Length': 4097 }, 'x'.repeat(4097)),
      );
      expect(slack.status).toBe(413);
      const probe = await exchange(
        server.port,
        get('/health/live', { 'Content-Length': 16_385 }, 'x'.repeat(16_385)),
      );
      expect(probe.status).toBe(413);
      // A body on a route that takes none is read within the limit and dropped, never parsed.
      const small = await exchange(
        server.port,
        get('/health/live', { 'Content-Length': 16_384 }, 'x'.repeat(16_384)),
      );
      expect(small.status).toBe(200);
      for (const answer of [slack, probe, small]) answer.socket.destroy();
    });

    it('a chunked body is counted as it streams and cut at the limit, 413 and closed', async () => {
      const chunk = Buffer.from(`400\r\n${'x'.repeat(0x400)}\r\n`);
      const answer = await exchange(
        server.port,
        post('/slack/events', {
          'Content-Type': 'application/json',
          'Transfer-Encoding': 'chunked',
        }),
        { rest: Array.from({ length: 64 }, () => chunk) },
      );
      expect(answer.status).toBe(413);
      expect(answer.headers.connection).toBe('close');
      await new Promise((resolve) => answer.socket.once('close', resolve));
      // Cut off in a socket's data event, outside the request: its line still carries the id.
      const id = answer.headers['x-request-id'];
      const refused = (): Record<string, unknown>[] =>
        server.logLines().filter((l) => l.msg === 'request refused' && l.requestId === id);
      // The line comes on another pipe than the close.
      await eventually(() => refused().length > 0, 10_000);
      expect(refused()).toEqual([expect.objectContaining({ route: '/slack/events', status: 413 })]);
    });

    it('a client that asks to continue is refused before it sends the body', async () => {
      const answer = await exchange(
        server.port,
        post('/slack/events', { 'Content-Length': 10 * MB, Expect: '100-continue' }),
      );
      expect(answer.status).toBe(413);
      answer.socket.destroy();
      const allowed = await exchange(
        server.port,
        post('/slack/commands', { 'Content-Length': 3, Expect: '100-continue' }),
      );
      expect(allowed.status).toBe(100);
      allowed.socket.destroy();
    });

    it('counts every refusal under its route', async () => {
      const before = counted(await scrape(server.port), '/slack/events', 413);
      const answer = await exchange(
        server.port,
        post('/slack/events', { 'Content-Length': 5000 }, 'x'.repeat(5000)),
      );
      answer.socket.destroy();
      expect(counted(await scrape(server.port), '/slack/events', 413)).toBe(before + 1);
    });
  });

  describe('malformed bodies', () => {
    const SECRET = 'edge-test-secret';
    const sign = (body: string) => {
      const timestamp = String(Math.floor(Date.now() / 1000));
      return {
        'X-Slack-Request-Timestamp': timestamp,
        'X-Slack-Signature': signSlackRequest(SECRET, timestamp, body),
      };
    };
    // Each would make a parser fail or work hard; none fits Slack's limit by being large.
    const cases: [string, string, string, string, number][] = [
      ['bad JSON', '/slack/events', 'application/json', `{"x":"${CANARY}`, 400],
      [
        'an unknown charset',
        '/slack/events',
        'application/json; charset=x-canary',
        `{"x":"${CANARY}"}`,
        415,
      ],
      ['JSON nested 100 deep', '/slack/events', 'application/json', '['.repeat(100), 413],
      ['a JSON array', '/slack/events', 'application/json', `["${CANARY}"]`, 400],
      [
        'over 1,000 form fields',
        '/slack/commands',
        'application/x-www-form-urlencoded',
        `${'a=&'.repeat(1000)}b=${CANARY}`,
        413,
      ],
      [
        'a form nested 40 deep',
        '/slack/commands',
        'application/x-www-form-urlencoded',
        `a${'[b]'.repeat(40)}=${CANARY}`,
        400,
      ],
    ];

    it.each(cases)(
      '%s, unsigned: 401 before anything parses it, nothing of it logged',
      async (_name, route, type, body) => {
        const answer = await exchange(
          server.port,
          post(route, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) }, body),
        );
        answer.socket.destroy();
        expect([answer.status, answer.body]).toEqual([401, '{"error":"invalid request"}']);
        expect(server.output()).not.toContain(CANARY);
      },
    );

    it.each(cases)(
      '%s, signed: a JSON 4xx without stack or HTML, logged without the body, counted',
      async (_name, route, type, body, code) => {
        const before = counted(await scrape(server.port), route, code);
        const logged = server.logLines().length;
        const headers = { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) };
        const answer = await exchange(
          server.port,
          post(route, { ...headers, ...sign(body) }, body),
        );
        answer.socket.destroy();
        expect(answer.status).toBe(code);
        expect(answer.headers['content-type']).toBe('application/json; charset=utf-8');
        expect(Object.keys(JSON.parse(answer.body))).toEqual(['error']);
        expect(answer.body).not.toMatch(/<|at |Error/);
        expect(counted(await scrape(server.port), route, code)).toBe(before + 1);
        // One line says why, one is the access line; both carry the request's id. The lines come
        // on another pipe than the answer: wait for the access line, the last of them.
        const ours = (): Record<string, unknown>[] =>
          server
            .logLines()
            .slice(logged)
            .filter((line) => line.requestId === answer.headers['x-request-id']);
        await eventually(() => ours().some((line) => line.msg === 'request'), 10_000);
        expect(ours()).toEqual([
          expect.objectContaining({ level: 'warn', msg: 'slack request refused' }),
          expect.objectContaining({ level: 'info', msg: 'request', route, status: code }),
        ]);
        expect(server.output()).not.toContain(CANARY);
      },
    );
  });

  describe('request targets and ids no route takes', () => {
    it.each(['OPTIONS', 'GET'])(
      'answers %s * as any unknown path: JSON 404, counted',
      async (method) => {
        const before = metricValue(await scrape(server.port), 'coffeebuddy_http_requests_total', {
          method,
          route: 'unmatched',
          status: '404',
        });
        const answer = await exchange(server.port, `${method} * HTTP/1.1\r\nHost: x\r\n\r\n`);
        answer.socket.destroy();
        expect([answer.status, answer.body]).toEqual([404, '{"error":"not found"}']);
        const after = metricValue(await scrape(server.port), 'coffeebuddy_http_requests_total', {
          method,
          route: 'unmatched',
          status: '404',
        });
        expect(after).toBe((before ?? 0) + 1);
      },
    );

    it('refuses a signed event whose id is longer than Slack’s, so it is never remembered', async () => {
      const body = JSON.stringify({
        type: 'event_callback',
        event_id: `Ev${'x'.repeat(63)}`,
        event: { type: 'app_mention' },
      });
      const timestamp = String(Math.floor(Date.now() / 1000));
      const answer = await exchange(
        server.port,
        post(
          '/slack/events',
          {
            'Content-Type': 'application/json',
            'Content-Length': Buffer.byteLength(body),
            'X-Slack-Request-Timestamp': timestamp,
            'X-Slack-Signature': signSlackRequest('edge-test-secret', timestamp, body),
          },
          body,
        ),
      );
      answer.socket.destroy();
      expect([answer.status, answer.body]).toEqual([400, '{"error":"invalid payload"}']);
    });
  });

  describe('keep-alive behind queue-proxy', () => {
    it('announces a timeout above queue-proxy’s 90 s, and answers a POST after 10 s idle', async () => {
      const first = await exchange(server.port, 'GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n');
      expect(first.headers['keep-alive']).toBe('timeout=95');
      await new Promise((resolve) => setTimeout(resolve, 10_000));
      const body = 'command=%2Fcoffee';
      const second = await exchange(
        server.port,
        post(
          '/slack/commands',
          {
            'Content-Type': 'application/x-www-form-urlencoded',
            'Content-Length': body.length,
          },
          body,
        ),
        { socket: first.socket },
      );
      expect(second.status).toBe(401);
      second.socket.destroy();
    }, 30_000);
  });
});
