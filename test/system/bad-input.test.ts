import http from 'node:http';
import net from 'node:net';
import { SYSTEM_TOLERANCE_MS } from './tolerance';
import { rssKb } from '../../testing/proc';
import { requireBuild, startCoffeebuddy, type RunningProcess } from '../../testing/process';
import {
  startOryStandIn,
  startVaultStandIn,
  type OryStandIn,
  type VaultStandIn,
} from '../../testing/standins';

/**
 * What a hostile or broken client can send, against the production server. Bodies cannot be
 * refused by the app before they are read: functions-framework buffers up to 1 GB before any
 * handler runs. Kong's request-size-limiting (64 KB) stops them in front; past the framework's own
 * limit the body is discarded as it arrives.
 */

const PROBE_PATHS = ['/health/live', '/health/ready', '/metrics'];
/** V8's old-space limit for the server under test, as a container's memory limit would set. */
const HEAP_CAP_MB = 160;

interface Answer {
  status: number;
  body: string;
  /** The status line and headers, as sent; raw answers only. */
  head?: string;
}

/** One request over a raw socket, bytes as given: nothing normalises the path. */
function raw(port: number, text: string | Buffer, timeoutMs = 5000): Promise<Answer | 'closed'> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let received = '';
    const timer = setTimeout(() => socket.destroy(), timeoutMs);
    socket.on('data', (chunk) => {
      received += chunk.toString('latin1');
      const [head = '', body = ''] = received.split('\r\n\r\n');
      const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? -1);
      if (length >= 0 && Buffer.byteLength(body, 'latin1') >= length) socket.end();
    });
    socket.on('close', () => {
      clearTimeout(timer);
      const status = /^HTTP\/1\.1 (\d{3})/.exec(received);
      resolve(
        status
          ? {
              status: Number(status[1]),
              head: received.split('\r\n\r\n')[0],
              body: received.split('\r\n\r\n').slice(1).join('\r\n\r\n'),
            }
          : 'closed',
      );
    });
    socket.on('error', () => undefined);
    socket.write(text);
  });
}

const get = (path: string, extra = '') =>
  `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${extra}\r\n`;

function request(
  port: number,
  options: {
    method: string;
    path: string;
    headers?: http.OutgoingHttpHeaders;
    body?: Buffer | string;
  },
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, agent: false, ...options }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    req.on('error', reject);
    req.setTimeout(15_000, () => req.destroy(new Error('timeout')));
    req.end(options.body);
  });
}

const rssMb = (pid: number): number => rssKb(pid) / 1024;

describe('bad input against the production server', () => {
  let vault: VaultStandIn;
  let ory: OryStandIn;
  let server: RunningProcess;
  let port: number;
  let rssBeforeMb = 0;

  beforeAll(async () => {
    requireBuild();
    vault = await startVaultStandIn();
    ory = await startOryStandIn();
    server = await startCoffeebuddy(vault.url, ory.url, {
      NODE_OPTIONS: `--max-old-space-size=${HEAP_CAP_MB}`,
      // The Vault and Ory stand-ins answer from this process, which the storms keep busy: on a
      // loaded machine they answered readiness checks after the default 800 ms, and /health/ready
      // said so (503). What is checked here is the server under abuse, not the stand-ins' speed.
      READINESS_TIMEOUT_MS: '10000',
    });
    port = server.port;
    for (const path of PROBE_PATHS) await request(port, { method: 'GET', path });
    rssBeforeMb = rssMb(server.child.pid!);
  });

  afterAll(async () => {
    await server.stop();
    await Promise.all([vault.close(), ory.close()]);
  });

  afterEach(async () => {
    // After every kind of abuse: the process lives and the probes still answer.
    expect(server.child.exitCode).toBeNull();
    for (const path of PROBE_PATHS) {
      expect((await request(port, { method: 'GET', path })).status).toBe(200);
    }
  });

  it('answers bodies of 10 MB and more at once, the answer reaching the client', async () => {
    const big = Buffer.alloc(12 * 1024 * 1024, 'a');
    const TOO_LARGE = '{"error":"request too large"}';
    // A route refuses by size; a path with no route, or a method the route does not take, first.
    const cases: [string, string, string, string, number, string][] = [
      ['GET', '/health/live', 'application/octet-stream', big.toString('latin1'), 413, TOO_LARGE],
      ['POST', '/nope', 'text/plain', big.toString('latin1'), 404, '{"error":"not found"}'],
      [
        'POST',
        '/health/live',
        'text/plain',
        big.toString('latin1'),
        405,
        '{"error":"method not allowed"}',
      ],
      [
        'GET',
        '/health/ready',
        'application/json',
        `{"a":"${'x'.repeat(11 * 1024 * 1024)}"}`,
        413,
        TOO_LARGE,
      ],
      [
        'GET',
        '/metrics',
        'application/x-www-form-urlencoded',
        `a=${'b'.repeat(10 * 1024 * 1024)}`,
        413,
        TOO_LARGE,
      ],
      [
        'POST',
        '/slack/events',
        'application/json',
        `{"a":"${'x'.repeat(11 * 1024 * 1024)}"}`,
        413,
        TOO_LARGE,
      ],
    ];
    for (const [method, path, type, body, status, text] of cases) {
      // Node's client sends a GET's body without a length unless told: say it, as Kong would.
      const headers = { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) };
      const answer = await request(port, { method, path, headers, body });
      expect([method, path, answer.status, answer.body]).toEqual([method, path, status, text]);
    }
  });

  it('refuses a declared 2 GB body at once and keeps none of what is sent anyway', async () => {
    const chunk = Buffer.alloc(1024 * 1024, 'x');
    const answers = new Map<net.Socket, string>();
    const sockets = await Promise.all(
      Array.from(
        { length: 5 },
        () =>
          new Promise<net.Socket>((resolve) => {
            const socket = net.connect(port, '127.0.0.1', () => {
              socket.write(
                'GET /health/live HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2000000000\r\n\r\n',
              );
              resolve(socket);
            });
            answers.set(socket, '');
            socket.on('data', (data: Buffer) => {
              answers.set(socket, answers.get(socket)! + data.toString('latin1'));
            });
            socket.on('error', () => undefined);
          }),
      ),
    );
    try {
      const before = rssMb(server.child.pid!);
      for (let i = 0; i < 20; i += 1) {
        await Promise.all(
          sockets.map((socket) => new Promise((resolve) => socket.write(chunk, resolve))),
        );
      }
      // Up to 100 MB sent in all: none of it is kept, and every client got its 413.
      expect(rssMb(server.child.pid!)).toBeLessThan(before + 50);
      for (const answer of answers.values()) expect(answer).toMatch(/^HTTP\/1\.1 413 /);
      const started = performance.now();
      expect((await request(port, { method: 'GET', path: '/health/live' })).status).toBe(200);
      expect(performance.now() - started).toBeLessThan(SYSTEM_TOLERANCE_MS);
    } finally {
      for (const socket of sockets) socket.destroy();
    }
  });

  // Routes refuse by method before reading a body; bodies that are parsed: test/system/edge.test.ts.
  it('refuses POSTs to a probe path with 405 whatever their body and content type', async () => {
    const cases: [string, string][] = [
      ['application/json', '{"unterminated'],
      ['application/json', '\u0000\u0001\u0002'],
      ['application/json; charset=utf-7', '{}'],
      [
        'application/x-www-form-urlencoded',
        Array.from({ length: 5000 }, (_, i) => `k${i}=v`).join('&'),
      ],
      ['text/xml', '<a><b></a>'],
      ['multipart/form-data; boundary=zzz', '--zzz\r\nnonsense'],
    ];
    for (const [type, body] of cases) {
      const answer = await request(port, {
        method: 'POST',
        path: '/health/live',
        headers: { 'Content-Type': type },
        body,
      });
      expect([type, answer.status]).toEqual([type, 405]);
    }
  });

  it.each(['PUT', 'DELETE', 'TRACE', 'OPTIONS', 'PATCH', 'CONNECT'])(
    'answers %s on the probe paths with 405 and Allow',
    async (method) => {
      for (const path of PROBE_PATHS) {
        const answer = await raw(
          port,
          `${method} ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
        );
        if (method === 'CONNECT') {
          // Node answers CONNECT itself (the server has no 'connect' listener): no 5xx, no crash.
          expect(answer === 'closed' || answer.status < 500).toBe(true);
        } else {
          expect(answer).toMatchObject({ status: 405 });
          expect(answer === 'closed' ? '' : answer.head).toMatch(/^allow: GET, HEAD\r?$/im);
        }
      }
    },
  );

  it('handles long URLs: 8 KB answered, past Node’s 16 KB header limit refused with 431', async () => {
    expect(await raw(port, get(`/health/live?q=${'x'.repeat(8200)}`))).toMatchObject({
      status: 200,
    });
    expect(await raw(port, get(`/${'a'.repeat(8200)}`))).toMatchObject({ status: 404 });
    expect(await raw(port, get(`/health/live?q=${'x'.repeat(20_000)}`))).toMatchObject({
      status: 431,
    });
  });

  it('survives header floods', async () => {
    const many = (count: number, size: number) =>
      Array.from({ length: count }, (_, i) => `F${i}: ${'v'.repeat(size)}\r\n`).join('');
    expect(await raw(port, get('/health/live', many(100, 100)))).toMatchObject({ status: 200 });
    expect(await raw(port, get('/health/live', many(400, 1)))).toMatchObject({ status: 200 });
    // Thousands of tiny headers: Node 20 serves them, Node 24 refuses the count with 431.
    const thousands = await raw(port, get('/health/live', many(1500, 1)));
    expect([200, 431]).toContain(thousands === 'closed' ? 0 : thousands.status);
    expect(await raw(port, get('/health/live', many(300, 100)))).toMatchObject({ status: 431 });
  });

  it.each([
    '/health/../metrics',
    '/health/%2e%2e/metrics',
    '/health/%2E%2E/metrics',
    '/health/..%2fmetrics',
    '/%2e%2e/health/live',
    '/health/live/../../metrics',
    '/metrics/../health/live',
    '/./metrics',
    '//metrics',
    '/METRICS',
    '/metrics%00',
    '/health/live%20',
    '/health/ready;x',
  ])('answers the traversal attempt %s with 404 and no metrics', async (path) => {
    const answer = await raw(port, get(path));
    expect(answer).toMatchObject({ status: 404, body: '{"error":"not found"}' });
  });

  it('keeps answering while slow clients hold partial requests open', async () => {
    const sockets = await Promise.all(
      Array.from(
        { length: 100 },
        () =>
          new Promise<net.Socket>((resolve) => {
            const socket = net.connect(port, '127.0.0.1', () => {
              socket.write('GET /health/live HTTP/1.1\r\nHost: x\r\nX-Slow: ');
              resolve(socket);
            });
            socket.on('error', () => undefined);
          }),
      ),
    );
    try {
      for (let i = 0; i < 20; i += 1) {
        const started = performance.now();
        expect((await request(port, { method: 'GET', path: '/health/live' })).status).toBe(200);
        expect(performance.now() - started).toBeLessThan(SYSTEM_TOLERANCE_MS);
      }
    } finally {
      for (const socket of sockets) socket.destroy();
    }
  });

  it('never answers a probe path with 5xx during storms, and frees their memory', async () => {
    // Six storms carry 240 MB of bodies; the server's heap is capped below that (HEAP_CAP_MB),
    // so it survives only if each storm's memory is released. RSS alone would depend on when V8
    // chooses to collect.
    for (let round = 0; round < 6; round += 1) {
      const storm: Promise<unknown>[] = [];
      const probes: Promise<Answer>[] = [];
      for (let i = 0; i < 20; i += 1) {
        storm.push(
          request(port, {
            method: 'POST',
            path: '/health/live',
            headers: { 'Content-Type': 'application/json' },
            body: `{"x":"${'y'.repeat(2 * 1024 * 1024)}`,
          }),
        );
        storm.push(raw(port, get(`/health/%2e%2e/${i}`)));
        for (const path of PROBE_PATHS) probes.push(request(port, { method: 'GET', path }));
      }
      await Promise.all(storm);
      const answers = await Promise.all(probes);
      expect(answers.filter((a) => a.status >= 500)).toEqual([]);
      expect(server.child.exitCode).toBeNull();
    }
    expect(rssMb(server.child.pid!)).toBeLessThan(rssBeforeMb + HEAP_CAP_MB * 2);
  });
});
