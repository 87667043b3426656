import net from 'node:net';
import {
  BODY_READ_TIMEOUT_MS,
  LINGER_MS,
  MAX_IN_FLIGHT_PER_CONNECTION,
} from '../../lib/http/pipeline';
import { DRAIN_IDLE_MAX_MS } from '../../lib/http/connections';
import { peakRssKb } from '../../testing/proc';
import { exited, requireBuild, startCoffeebuddy, type RunningProcess } from '../../testing/process';
import {
  startOryStandIn,
  startVaultStandIn,
  type OryStandIn,
  type VaultStandIn,
} from '../../testing/standins';
import { eventually } from '../../testing/tools';
import { SYSTEM_TOLERANCE_MS } from './tolerance';

/**
 * Clients that hold the server rather than use it, against the production entry with the image's
 * memory flags: bodies a byte a chunk, bodies that trickle, pipelines never read, request heads
 * that trickle through a drain. Each must cost a bounded amount and end.
 */

const IMAGE_MEMORY = { NODE_OPTIONS: '--max-semi-space-size=8 --max-old-space-size=160' };
const SECRET = 'slow-clients-secret';

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/**
 * Everything the server sends on `socket` until it closes it (or `timeoutMs`, then an error). The
 * timeout first lets the loop read what is pending: a starved test process runs a late timer
 * before the close that arrived in time.
 */
function untilClosed(socket: net.Socket, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let received = '';
    let closed = false;
    const timer = setTimeout(() => {
      setImmediate(() => {
        if (closed) return;
        socket.destroy();
        reject(new Error(`still open after ${timeoutMs} ms: ${received.slice(0, 200)}`));
      });
    }, timeoutMs);
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    socket.once('close', () => {
      closed = true;
      clearTimeout(timer);
      resolve(received);
    });
    socket.on('error', () => undefined);
  });
}

// A server of its own: the chunks still queued when the test ends are its backlog, not the next test's.
describe('a chunked Slack body sent a byte a chunk', () => {
  it('is kept to its bytes: 60 such bodies, memory bounded', async () => {
    requireBuild();
    const vault = await startVaultStandIn();
    const ory = await startOryStandIn();
    const server = await startCoffeebuddy(vault.url, ory.url, {
      ...IMAGE_MEMORY,
      NODE_ENV: 'development',
      SLACK_SIGNING_SECRET: SECRET,
    });
    const head =
      'POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n';
    const sockets = await Promise.all(Array.from({ length: 60 }, () => connect(server.port)));
    try {
      for (const socket of sockets) socket.write(head);
      // 20,000 one-byte chunks each (120 KB on the wire), never finished.
      const chunks = '1\r\nA\r\n'.repeat(1000);
      for (let round = 0; round < 20; round += 1) {
        await Promise.all(
          sockets.map((socket) => new Promise((resolve) => socket.write(chunks, resolve))),
        );
      }
      expect(server.child.exitCode).toBeNull();
      // A Buffer kept per chunk made this ~400 bytes of heap a byte: 60 × 20,000 → ~480 MB.
      expect(peakRssKb(server.child.pid!) / 1024).toBeLessThan(160);
      expect((await fetch(`${server.url}/health/live`)).status).toBe(200);
    } finally {
      for (const socket of sockets) socket.destroy();
      server.child.kill('SIGKILL');
      await exited(server.child);
      await Promise.all([vault.close(), ory.close()]);
    }
  }, 60_000);
});

describe('clients that hold the server', () => {
  let vault: VaultStandIn;
  let ory: OryStandIn;
  let server: RunningProcess;

  beforeAll(async () => {
    requireBuild();
    vault = await startVaultStandIn();
    ory = await startOryStandIn();
    server = await startCoffeebuddy(vault.url, ory.url, {
      ...IMAGE_MEMORY,
      NODE_ENV: 'development',
      SLACK_SIGNING_SECRET: SECRET,
    });
  });
  afterAll(async () => {
    await server.stop();
    await Promise.all([vault.close(), ory.close()]);
  });

  it('answers a body that trickles for longer than BODY_READ_TIMEOUT_MS with 408 and closes', async () => {
    const socket = await connect(server.port);
    // The 408 at the timeout, then the rest read and dropped for LINGER_MS while it trickles on.
    const closed = untilClosed(socket, BODY_READ_TIMEOUT_MS + LINGER_MS + SYSTEM_TOLERANCE_MS);
    socket.write(
      'POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{',
    );
    const trickle = setInterval(() => socket.write(' '), 500);
    try {
      const answer = await closed;
      expect(answer).toMatch(/^HTTP\/1\.1 408 [^]*\{"error":"request timeout"\}/);
      // Its log line comes on another pipe than the close: wait for it, or the next test reads it.
      await eventually(
        () =>
          server
            .logLines()
            .some((line) => line.msg === 'request refused' && line.reason === 'request timeout'),
        10_000,
      );
    } finally {
      clearInterval(trickle);
    }
  }, 30_000);

  it('refuses a pipeline of answers never read past the bound, without running what follows', async () => {
    const socket = await connect(server.port);
    // A small receive window that is never read: answers cannot be flushed.
    socket.pause();
    const requests = 200;
    const before = server.logLines().length;
    socket.write('GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(requests));
    await eventually(
      () =>
        server
          .logLines()
          .slice(before)
          .some((line) => line.msg === 'request refused'),
      10_000,
    );
    // Requests past the bound are refused once, and nothing behind the refusal is taken on.
    expect(
      server
        .logLines()
        .slice(before)
        .filter((line) => line.msg === 'request refused'),
    ).toEqual([
      expect.objectContaining({
        status: 429,
        route: '/metrics',
        reason: 'too many requests on one connection',
      }),
    ]);
    expect(MAX_IN_FLIGHT_PER_CONNECTION).toBeLessThan(requests);
    socket.destroy();
    expect((await fetch(`${server.url}/health/live`)).status).toBe(200);
  });

  it('runs nothing pipelined behind a refusal that closes the connection', async () => {
    const socket = await connect(server.port);
    const closed = untilClosed(socket, 10_000);
    const before = server.logLines().length;
    socket.write(
      'POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nX' +
        'POST /slack/events HTTP/1.1\r\nHost: x\r\nX-Request-ID: pipelined-behind-refusal\r\nContent-Length: 2\r\n\r\n{}',
    );
    expect(await closed).toMatch(/^HTTP\/1\.1 404 /);
    const lines = server.logLines().slice(before);
    expect(lines.filter((line) => line.requestId === 'pipelined-behind-refusal')).toEqual([]);
  });

  it('refuses a transfer coding other than chunked', async () => {
    const socket = await connect(server.port);
    const closed = untilClosed(socket, 10_000);
    socket.write(
      'POST /slack/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n',
    );
    expect(await closed).toMatch(/^HTTP\/1\.1 415 [^]*\{"error":"unsupported transfer encoding"\}/);
  });
});

describe('a request head that trickles through a drain', () => {
  it(`cannot hold the drain past DRAIN_IDLE_MAX_MS`, async () => {
    requireBuild();
    const vault = await startVaultStandIn();
    const ory = await startOryStandIn();
    const running = await startCoffeebuddy(vault.url, ory.url);
    const socket = await connect(running.port);
    socket.on('error', () => undefined);
    socket.write('GET /health/live HTTP/1.1\r\n');
    const trickle = setInterval(() => socket.write('X'), 300);
    try {
      const signalled = performance.now();
      running.child.kill('SIGTERM');
      const code = await exited(running.child);
      expect(code).toBe(0);
      expect(performance.now() - signalled).toBeLessThan(
        DRAIN_IDLE_MAX_MS + SYSTEM_TOLERANCE_MS + 1000,
      );
    } finally {
      clearInterval(trickle);
      socket.destroy();
      await running.stop();
      await Promise.all([vault.close(), ory.close()]);
    }
  });
});
