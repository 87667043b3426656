import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { CloudEventPublisher, type EventToPublish } from '../../lib/eventing/publisher';
import { createLogger } from '../../lib/logger';
import type { PublishOutcome } from '../../lib/eventing/publisher';
import { startSink, type Sink } from '../../testing/sink';
import { eventually } from '../../testing/tools';

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
