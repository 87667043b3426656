import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { UpstreamError } from '../../lib/errors';
import { Upstream, describeFailure } from '../../lib/http/upstream';
import { runInContext } from '../../lib/request-context';
import { absentUrl, startOryStandIn, type OryStandIn } from '../../testing/standins';
import { eventually, findCommand, itWithCommand } from '../../testing/tools';

const okOn200 = (status: number) => (status === 200 ? undefined : `status ${status}`);

describe('Upstream.check network failures', () => {
  let ory: OryStandIn;
  const opened: Upstream[] = [];
  const upstream = (url: string, timeoutMs: number) => {
    const created = new Upstream(url, timeoutMs);
    opened.push(created);
    return created;
  };

  beforeAll(async () => {
    ory = await startOryStandIn();
  });
  beforeEach(() => {
    ory.fault = { kind: 'none' };
  });
  afterEach(() => {
    for (const u of opened.splice(0)) u.close();
  });
  afterAll(() => ory.close());

  it('names a refused connection', async () => {
    const health = await upstream(await absentUrl(), 500).check('/health/ready', okOn200);
    expect(health).toMatchObject({ status: 'unavailable', error: 'connection refused' });
  });

  // How soon it gives up is a deadline, held in test/system/deadlines.test.ts.
  it('times out a server that accepts and never answers, naming the timeout', async () => {
    ory.fault = { kind: 'hang' };
    const health = await upstream(ory.url, 200).check('/health/ready', okOn200);
    expect(health).toMatchObject({ status: 'unavailable', error: 'timeout after 200 ms' });
  });

  it('names a reset connection, after one more try', async () => {
    ory.fault = { kind: 'reset' };
    ory.resetCounts();
    const health = await upstream(ory.url, 500).check('/health/ready', okOn200);
    expect(health).toMatchObject({ status: 'unavailable', error: 'connection reset' });
    expect(ory.requests).toBe(2);
  });

  it('does not call a server down because it reset one pooled connection', async () => {
    const client = upstream(ory.url, 500);
    expect((await client.check('/health/ready', okOn200)).status).toBe('ok');
    ory.fault = { kind: 'resetOnce' };
    ory.resetCounts();
    expect((await client.check('/health/ready', okOn200)).status).toBe('ok');
    expect(ory.requests).toBe(2);
  });

  it('calls a server that went away refused, not reset', async () => {
    const client = upstream(ory.url, 500);
    expect((await client.check('/health/ready', okOn200)).status).toBe('ok');
    await ory.goAway();
    try {
      expect(await client.check('/health/ready', okOn200)).toMatchObject({
        error: 'connection refused',
      });
    } finally {
      await ory.comeBack();
    }
  });

  it('names an answer that is not HTTP', async () => {
    ory.fault = { kind: 'garbage' };
    const health = await upstream(ory.url, 500).check('/health/ready', okOn200);
    expect(health).toMatchObject({ status: 'unavailable', error: 'invalid HTTP response' });
  });

  it('accepts a slow answer inside the timeout and reports its latency', async () => {
    ory.fault = { kind: 'slow', delayMs: 120 };
    const health = await upstream(ory.url, 1000).check('/health/ready', okOn200);
    expect(health.status).toBe('ok');
    expect(health.latencyMs).toBeGreaterThanOrEqual(100);
  });

  it('times out a slow answer past the timeout', async () => {
    ory.fault = { kind: 'slow', delayMs: 400 };
    const health = await upstream(ory.url, 100).check('/health/ready', okOn200);
    expect(health).toMatchObject({ status: 'unavailable', error: 'timeout after 100 ms' });
  });

  it('names a host that DNS does not know', async () => {
    // .invalid is reserved (RFC 2606): it never resolves.
    const health = await upstream('http://vault.invalid:8200', 5000).check('/', okOn200);
    expect(health).toMatchObject({ error: 'DNS lookup failed for vault.invalid' });
  });

  it('recovers after the upstream comes back', async () => {
    const client = upstream(ory.url, 300);
    ory.fault = { kind: 'reset' };
    expect((await client.check('/health/ready', okOn200)).status).toBe('unavailable');
    ory.fault = { kind: 'none' };
    expect((await client.check('/health/ready', okOn200)).status).toBe('ok');
  });
});

interface Received {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  remotePort: number;
}

/** A loopback server recording each request, answering as `answer` says (`ok` unless set). */
async function recorder() {
  const received: Received[] = [];
  const state: { answer: (req: http.IncomingMessage, res: http.ServerResponse) => void } = {
    answer: (_req, res) => res.end('ok'),
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      received.push({
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
        remotePort: req.socket.remotePort ?? 0,
      });
      state.answer(req, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    state,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('Upstream.request', () => {
  let server: Awaited<ReturnType<typeof recorder>>;
  const opened: Upstream[] = [];
  const upstream = (url: string, timeoutMs = 5000) => {
    const created = new Upstream(url, timeoutMs);
    opened.push(created);
    return created;
  };

  beforeEach(async () => {
    server = await recorder();
  });
  afterEach(async () => {
    for (const u of opened.splice(0)) u.close();
    await server.close();
  });

  it('GETs under the base URL (trailing slashes dropped) asking for JSON, with no body', async () => {
    const answer = await upstream(`${server.url}//`).request('GET', '/v1/sys/health?x=1');
    expect(answer.status).toBe(200);
    expect(server.received).toHaveLength(1);
    const [get] = server.received;
    expect([get!.method, get!.url, get!.body]).toEqual(['GET', '/v1/sys/health?x=1', '']);
    expect(get!.headers.accept).toBe('application/json');
    expect(get!.headers['content-type']).toBeUndefined();
    expect(get!.headers['x-request-id']).toBeUndefined();
  });

  it('sends the id of the request it is made for, as X-Request-ID', async () => {
    const client = upstream(server.url);
    await runInContext({ requestId: 'req-42' }, () => client.request('GET', '/'));
    expect(server.received[0]!.headers['x-request-id']).toBe('req-42');
  });

  it('POSTs JSON with its content type; the caller’s headers win', async () => {
    await upstream(server.url).request('POST', '/v1/auth/login', {
      json: { role: 'r', jwt: 'j' },
      headers: { 'X-Vault-Token': 't', accept: 'text/plain' },
    });
    const [post] = server.received;
    expect([post!.method, post!.url, post!.body]).toEqual([
      'POST',
      '/v1/auth/login',
      '{"role":"r","jwt":"j"}',
    ]);
    expect(post!.headers['content-type']).toBe('application/json');
    expect(post!.headers['x-vault-token']).toBe('t');
    expect(post!.headers.accept).toBe('text/plain');
  });

  it('gives the status, the headers by lower-case name (repeated ones joined), and the body', async () => {
    server.state.answer = (_req, res) => {
      res.setHeader('X-Single', 'a');
      res.setHeader('X-Multi', ['1', '2']);
      res.writeHead(201);
      res.end('{"done":true}');
    };
    const answer = await upstream(server.url).request('GET', '/');
    expect(answer.status).toBe(201);
    expect(answer.headers).toMatchObject({ 'x-single': 'a', 'x-multi': '1, 2' });
    expect(answer.body.toString()).toBe('{"done":true}');
  });

  it('never follows a redirect', async () => {
    server.state.answer = (_req, res) => res.writeHead(302, { Location: '/elsewhere' }).end();
    const answer = await upstream(server.url).request('GET', '/');
    expect(answer.status).toBe(302);
    expect(server.received.map((r) => r.url)).toEqual(['/']);
  });

  it('takes an answer of 64 KiB and refuses a longer one as too large', async () => {
    let size = 64 * 1024;
    server.state.answer = (_req, res) => res.end('x'.repeat(size));
    const client = upstream(server.url);
    expect((await client.request('GET', '/')).body).toHaveLength(64 * 1024);
    size += 1;
    await expect(client.request('GET', '/')).rejects.toThrow(
      new UpstreamError('response too large'),
    );
  });

  it('keeps its connection alive from one request to the next', async () => {
    const client = upstream(server.url);
    await client.request('GET', '/');
    await client.request('GET', '/');
    const [first, second] = server.received;
    expect(second!.remotePort).toBe(first!.remotePort);
  });

  it('destroys its kept-alive connection on close()', async () => {
    const client = upstream(server.url);
    await client.request('GET', '/');
    const { agent } = client as unknown as { agent: http.Agent };
    await eventually(() => Object.values(agent.freeSockets).flat().length === 1);
    const [socket] = Object.values(agent.freeSockets).flat();
    client.close();
    expect(socket!.destroyed).toBe(true);
  });

  it('times out by the request’s own timeoutMs when it names one', async () => {
    server.state.answer = () => undefined;
    await expect(
      upstream(server.url, 60_000).request('GET', '/', { timeoutMs: 100 }),
    ).rejects.toThrow(new UpstreamError('timeout after 100 ms'));
  });

  it('sends nothing once the caller’s signal has aborted, and stops when it aborts', async () => {
    const client = upstream(server.url, 60_000);
    await expect(client.request('GET', '/', { signal: AbortSignal.abort() })).rejects.toThrow(
      UpstreamError,
    );
    expect(server.received).toHaveLength(0);
    server.state.answer = () => undefined;
    const caller = new AbortController();
    const pending = client.request('GET', '/', { signal: caller.signal });
    await eventually(() => server.received.length === 1);
    caller.abort();
    await expect(pending).rejects.toThrow(UpstreamError);
  });

  it('sends a GET once more after a reset, never a POST', async () => {
    server.state.answer = (req) => req.socket.destroy();
    const client = upstream(server.url);
    await expect(client.request('POST', '/', { json: {} })).rejects.toThrow(
      new UpstreamError('connection reset'),
    );
    expect(server.received).toHaveLength(1);
    await expect(client.request('GET', '/')).rejects.toThrow(new UpstreamError('connection reset'));
    expect(server.received).toHaveLength(3);
  });

  it('sends a GET only once when it fails otherwise than by a reset', async () => {
    server.state.answer = (req) => {
      req.socket.end('NOT HTTP AT ALL\r\n\r\n');
    };
    await expect(upstream(server.url).request('GET', '/')).rejects.toThrow(
      new UpstreamError('invalid HTTP response'),
    );
    expect(server.received).toHaveLength(1);
  });

  it('check(): reports the time the check took, no more', async () => {
    const client = upstream(server.url);
    const before = performance.now();
    const health = await client.check('/', okOn200);
    const took = performance.now() - before;
    expect(health.status).toBe('ok');
    expect(health.latencyMs).toBeGreaterThanOrEqual(0);
    expect(health.latencyMs).toBeLessThanOrEqual(Math.round(took) + 1);
  });

  it('check(): names the status the judge refuses', async () => {
    server.state.answer = (_req, res) => res.writeHead(503).end();
    const health = await upstream(server.url).check('/', okOn200);
    expect(health).toMatchObject({ status: 'unavailable', error: 'status 503' });
  });
});

describe('Upstream over https', () => {
  const itWithOpenssl = itWithCommand('openssl', 'apt-get install openssl');
  const haveOpenssl = findCommand('openssl') !== undefined;
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upstream-tls-'));
    if (!haveOpenssl) return;
    execFileSync(
      'openssl',
      [
        ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'],
        ...['-nodes', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')],
        ...['-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'],
      ],
      { stdio: 'ignore' },
    );
  });
  afterAll(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  itWithOpenssl(
    'speaks TLS to an https URL, and refuses a certificate it does not trust',
    async () => {
      let requests = 0;
      const server = https.createServer(
        {
          key: fs.readFileSync(path.join(dir, 'key.pem')),
          cert: fs.readFileSync(path.join(dir, 'cert.pem')),
        },
        (_req, res) => {
          requests += 1;
          res.end('ok');
        },
      );
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const { port } = server.address() as net.AddressInfo;
      const client = new Upstream(`https://127.0.0.1:${port}`, 2000);
      try {
        await expect(client.request('GET', '/')).rejects.toThrow(
          new UpstreamError('TLS certificate rejected (DEPTH_ZERO_SELF_SIGNED_CERT)'),
        );
        expect(requests).toBe(0);
      } finally {
        client.close();
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      }
    },
  );
});

describe('describeFailure', () => {
  const described = (error: unknown) => describeFailure(error, 'vault.example', 250);

  it.each<[string, unknown, string]>([
    ['an AbortError', { name: 'AbortError' }, 'timeout after 250 ms'],
    ['a TimeoutError', { name: 'TimeoutError' }, 'timeout after 250 ms'],
    ['node-fetch’s aborted type', { type: 'aborted' }, 'timeout after 250 ms'],
    ['node-fetch’s max-size type', { type: 'max-size' }, 'response too large'],
    ['ECONNREFUSED', { code: 'ECONNREFUSED' }, 'connection refused'],
    ['ENOTFOUND', { code: 'ENOTFOUND' }, 'DNS lookup failed for vault.example'],
    ['EAI_AGAIN', { code: 'EAI_AGAIN' }, 'DNS lookup failed for vault.example'],
    ['EAI_FAIL', { code: 'EAI_FAIL' }, 'DNS lookup failed for vault.example'],
    ['ECONNRESET', { code: 'ECONNRESET' }, 'connection reset'],
    ['EPIPE', { code: 'EPIPE' }, 'connection reset'],
    ['ETIMEDOUT', { code: 'ETIMEDOUT' }, 'connection timed out'],
    ['EHOSTUNREACH', { code: 'EHOSTUNREACH' }, 'no route to vault.example'],
    ['ENETUNREACH', { code: 'ENETUNREACH' }, 'no route to vault.example'],
    ['EPROTO', { code: 'EPROTO' }, 'TLS handshake failed'],
    ['an error with no code', new Error('secret'), 'request failed'],
    ['undefined', undefined, 'request failed'],
    ['null', null, 'request failed'],
    ['an HTTP parse error', { code: 'HPE_INVALID_CONSTANT' }, 'invalid HTTP response'],
    ['a code ending in HPE_', { code: 'XHPE_' }, 'network error (XHPE_)'],
    [
      'a certificate error',
      { code: 'CERT_HAS_EXPIRED' },
      'TLS certificate rejected (CERT_HAS_EXPIRED)',
    ],
    [
      'a self-signed code',
      { code: 'X_SELF_SIGNED_X' },
      'TLS certificate rejected (X_SELF_SIGNED_X)',
    ],
    [
      'a TLS error',
      { code: 'ERR_TLS_HANDSHAKE_TIMEOUT' },
      'TLS certificate rejected (ERR_TLS_HANDSHAKE_TIMEOUT)',
    ],
    ['any other code', { code: 'EMFILE' }, 'network error (EMFILE)'],
  ])('%s', (_name, error, reason) => {
    expect(described(error)).toBe(reason);
  });
});
