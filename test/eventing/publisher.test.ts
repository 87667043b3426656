import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { CloudEventPublisher, type EventToPublish } from '../../lib/eventing/publisher';
import { createLogger } from '../../lib/logger';
import type { PublishOutcome } from '../../lib/eventing/publisher';
import { startSink, type Sink } from '../../testing/sink';
import { eventually, findCommand, itWithCommand } from '../../testing/tools';

const EVENT: EventToPublish = {
  id: 'Ev1',
  type: 'com.slack.event.app_mention',
  source: 'https://slack.com/teams/T1',
  data: Buffer.from('{"type":"event_callback","event_id":"Ev1"}'),
};

function publisherFor(sink: string, timeoutMs = 500) {
  const observed: PublishOutcome[] = [];
  const publisher = new CloudEventPublisher({
    sink,
    extensions: { cluster: 'dev1' },
    timeoutMs,
    logger: createLogger('error', () => undefined),
    observe: (outcome) => observed.push(outcome),
  });
  return { publisher, observed };
}

describe('CloudEventPublisher', () => {
  let sink: Sink;
  beforeEach(async () => {
    sink = await startSink();
  });
  afterEach(() => sink.close());

  it('reuses one keep-alive connection for publishes one after another', async () => {
    const { publisher, observed } = publisherFor(sink.url);
    try {
      for (const id of ['Ev1', 'Ev2', 'Ev3']) {
        expect(await publisher.publish({ ...EVENT, id })).toEqual({ ok: true });
      }
      expect(sink.events().map((e) => e.id)).toEqual(['Ev1', 'Ev2', 'Ev3']);
      expect(sink.openConnections).toBe(1);
      expect(observed).toEqual(['ok', 'ok', 'ok']);
    } finally {
      publisher.close();
    }
  });

  it('sends the data byte for byte as the body, never written again', async () => {
    const { publisher } = publisherFor(sink.url);
    // JSON that JSON.stringify would make larger: numbers written out, spaces and escapes kept.
    const data = Buffer.from(`{ "n": [${Array(50).fill('1e20').join(', ')}], "s": "\\u00e9" }\n`);
    try {
      expect(await publisher.publish({ ...EVENT, data })).toEqual({ ok: true });
      const [received] = sink.received;
      expect(Buffer.from(received!.body)).toEqual(data);
      expect(received!.headers['content-length']).toBe(String(data.length));
      expect(received!.headers['content-type']).toBe('application/json');
      expect(sink.events()[0]).toMatchObject({ id: 'Ev1', datacontenttype: 'application/json' });
    } finally {
      publisher.close();
    }
  });

  it('settles at the deadline on a sink that never answers, and destroys the request', async () => {
    sink.answer = { kind: 'hang' };
    const { publisher, observed } = publisherFor(sink.url, 100);
    try {
      expect(await publisher.publish(EVENT)).toEqual({
        ok: false,
        reason: 'timeout after 100 ms',
      });
      expect(observed).toEqual(['failed']);
      // Destroyed, not left to hold a socket of the pool.
      await eventually(() => sink.openConnections === 0);
    } finally {
      publisher.close();
    }
  });

  it('stops reading an endless answer at its bound, and believes its 2xx', async () => {
    const server = http.createServer((req, res) => {
      req.resume();
      res.writeHead(202, { 'content-type': 'text/plain' });
      // An endless answer: the publisher stops reading it.
      const timer = setInterval(() => {
        res.write('x'.repeat(64 * 1024));
      }, 1);
      res.on('close', () => {
        clearInterval(timer);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const { publisher } = publisherFor(`http://127.0.0.1:${port}/`, 2000);
    try {
      expect(await publisher.publish(EVENT)).toEqual({ ok: true });
    } finally {
      publisher.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('believes a 2xx status received before the deadline, its body still to come', async () => {
    const server = http.createServer((req, res) => {
      req.resume();
      // The status is sent, the body never ends.
      res.writeHead(202, { 'content-type': 'text/plain' });
      res.flushHeaders();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const { publisher, observed } = publisherFor(`http://127.0.0.1:${port}/`, 200);
    try {
      expect(await publisher.publish(EVENT)).toEqual({ ok: true });
      expect(observed).toEqual(['ok']);
    } finally {
      publisher.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('does not send again when a new connection is reset before any answer', async () => {
    let requests = 0;
    const server = http.createServer((req) => {
      requests += 1;
      req.socket.destroy();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const { publisher, observed } = publisherFor(`http://127.0.0.1:${port}/`);
    try {
      expect(await publisher.publish(EVENT)).toMatchObject({ ok: false });
      expect(requests).toBe(1);
      expect(observed).toEqual(['failed']);
    } finally {
      publisher.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('sends once more on a new connection when a reused one is reset before any answer', async () => {
    const requestsOn = new Map<Socket, number>();
    let resets = 0;
    const server = http.createServer((req, res) => {
      req.resume();
      const count = (requestsOn.get(req.socket) ?? 0) + 1;
      requestsOn.set(req.socket, count);
      // As a server closing an idle keep-alive connection just as it is reused.
      if (count > 1) {
        resets += 1;
        req.socket.destroy();
        return;
      }
      req.on('end', () => res.writeHead(202, { 'content-length': '0' }).end());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const { publisher } = publisherFor(`http://127.0.0.1:${port}/`);
    try {
      expect(await publisher.publish(EVENT)).toEqual({ ok: true });
      expect(await publisher.publish({ ...EVENT, id: 'Ev2' })).toEqual({ ok: true });
      expect(resets).toBe(1);
      expect(requestsOn.size).toBe(2);
    } finally {
      publisher.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('closes its keep-alive connections when closed', async () => {
    const { publisher } = publisherFor(sink.url);
    await publisher.publish(EVENT);
    expect(sink.openConnections).toBe(1);
    publisher.close();
    await eventually(() => sink.openConnections === 0);
  });
});

/** A loopback server answering each request with `handler`; counts the connections it got. */
async function serve(handler: http.RequestListener) {
  const server = http.createServer(handler);
  let connections = 0;
  server.on('connection', () => {
    connections += 1;
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    connections: () => connections,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('CloudEventPublisher and the answer’s body', () => {
  const answering = (bytes: number) =>
    serve((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(202, { 'content-length': String(bytes) }).end('x'.repeat(bytes));
      });
    });

  it('reads an answer of up to 16 KiB to its end, and reuses the connection', async () => {
    const server = await answering(16 * 1024);
    const { publisher, observed } = publisherFor(server.url, 2000);
    try {
      expect(await publisher.publish(EVENT)).toEqual({ ok: true });
      expect(await publisher.publish({ ...EVENT, id: 'Ev2' })).toEqual({ ok: true });
      expect(server.connections()).toBe(1);
      expect(observed).toEqual(['ok', 'ok']);
    } finally {
      publisher.close();
      await server.close();
    }
  });

  it('drops the connection of an answer over 16 KiB, and believes its 2xx', async () => {
    const server = await answering(16 * 1024 + 1);
    const { publisher, observed } = publisherFor(server.url, 2000);
    try {
      expect(await publisher.publish(EVENT)).toEqual({ ok: true });
      expect(await publisher.publish({ ...EVENT, id: 'Ev2' })).toEqual({ ok: true });
      expect(server.connections()).toBe(2);
      expect(observed).toEqual(['ok', 'ok']);
    } finally {
      publisher.close();
      await server.close();
    }
  });
});

/**
 * An https sink is spoken to over TLS: a sink whose self-signed certificate is not trusted gets a
 * handshake, and the publish fails on the certificate, the event never sent in clear.
 */
describe('CloudEventPublisher to an https sink', () => {
  const itWithOpenssl = itWithCommand('openssl', 'apt-get install openssl');
  const haveOpenssl = findCommand('openssl') !== undefined;
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'publisher-tls-'));
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

  itWithOpenssl('shakes hands, and refuses a certificate it does not trust', async () => {
    let handshakes = 0;
    let requests = 0;
    const server = https.createServer(
      {
        key: fs.readFileSync(path.join(dir, 'key.pem')),
        cert: fs.readFileSync(path.join(dir, 'cert.pem')),
      },
      (_req, res) => {
        requests += 1;
        res.writeHead(202).end();
      },
    );
    server.on('tlsClientError', () => {
      handshakes += 1;
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const { publisher, observed } = publisherFor(`https://127.0.0.1:${port}/`, 2000);
    try {
      expect(await publisher.publish(EVENT)).toEqual({
        ok: false,
        reason: 'TLS certificate rejected (DEPTH_ZERO_SELF_SIGNED_CERT)',
      });
      expect(observed).toEqual(['failed']);
      await eventually(() => handshakes === 1);
      expect(requests).toBe(0);
    } finally {
      publisher.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
