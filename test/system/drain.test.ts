import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { exited, requireBuild, startCoffeebuddy, type RunningProcess } from '../../testing/process';
import { eventually } from '../../testing/tools';
import {
  startOryStandIn,
  startVaultStandIn,
  type OryStandIn,
  type VaultStandIn,
} from '../../testing/standins';

/**
 * The drain under keep-alive traffic, as queue-proxy sends it: many connections, each sending its
 * next request as soon as the last is answered. No request already sent may go unanswered, and
 * each connection must be told to close by an answer rather than cut.
 */

const FAULT_PRELOAD = path.join(__dirname, '..', 'support', 'fault.js');
const CONNECTIONS = 50;
/** Each connection stops after this many requests even if never told to close (a failure). */
const MAX_REQUESTS_PER_CONNECTION = 5_000;
/** Before the signal, every connection has been answered this many times. */
const WARM_REQUESTS = 10;

interface Loop {
  answered: number;
  lost: number;
  /** Whether the connection's last answer carried `Connection: close`. */
  toldToClose: boolean;
  /** Sockets the loop used: one, unless the server closed it without saying so. */
  sockets: number;
}

/** One keep-alive connection sending requests back to back until an answer says close. */
async function sendBackToBack(port: number, loop: Loop): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let i = 0; i < MAX_REQUESTS_PER_CONNECTION && !loop.toldToClose; i += 1) {
      const closing = await new Promise<boolean | 'lost'>((resolve) => {
        const req = http.get({ host: '127.0.0.1', port, path: '/health/live', agent }, (res) => {
          res.resume();
          res.on('end', () => {
            loop.answered += 1;
            resolve(res.headers.connection === 'close');
          });
        });
        req.on('socket', (socket) => {
          if (!req.reusedSocket) loop.sockets += 1;
          socket.setNoDelay(true);
        });
        req.on('error', () => {
          resolve('lost');
        });
        req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
      });
      if (closing === 'lost') {
        loop.lost += 1;
        return;
      }
      loop.toldToClose = closing;
    }
  } finally {
    agent.destroy();
  }
}

describe('the drain under back-to-back keep-alive traffic', () => {
  let vault: VaultStandIn;
  let ory: OryStandIn;
  let server: RunningProcess | undefined;

  beforeAll(async () => {
    requireBuild();
    vault = await startVaultStandIn();
    ory = await startOryStandIn();
  });
  afterEach(async () => {
    await server?.stop();
    server = undefined;
  });
  afterAll(() => Promise.all([vault.close(), ory.close()]));

  it.each([
    ['SIGTERM', 'SIGTERM', 0, {}],
    ['a fault outside a request', 'SIGUSR2', 1, { FAULT_KIND: 'unhandled_rejection' }],
  ] as const)(
    'on %s answers every request sent, each connection’s last answer says close, and exits',
    async (_name, signal, exitCode, env) => {
      server = await startCoffeebuddy(vault.url, ory.url, env, ['-r', FAULT_PRELOAD]);
      const running = server;
      const loops: Loop[] = Array.from({ length: CONNECTIONS }, () => ({
        answered: 0,
        lost: 0,
        toldToClose: false,
        sockets: 0,
      }));
      const traffic = Promise.all(loops.map((loop) => sendBackToBack(running.port, loop)));
      await eventually(() => loops.every((loop) => loop.answered >= WARM_REQUESTS), 15_000);
      running.child.kill(signal);
      await traffic;
      const code = await exited(running.child);

      expect(loops.map((loop) => loop.lost)).toEqual(loops.map(() => 0));
      expect(loops.map((loop) => loop.toldToClose)).toEqual(loops.map(() => true));
      expect(loops.map((loop) => loop.sockets)).toEqual(loops.map(() => 1));
      expect(code).toBe(exitCode);
      const finished = running.logLines().find((line) => line.msg === 'drain finished');
      expect(finished).toMatchObject({ drained: true, requestsAbandoned: 0, connectionsCut: 0 });
    },
  );

  it('exits 0 on SIGTERM when the reader of its logs has gone away (EPIPE)', async () => {
    server = await startCoffeebuddy(vault.url, ory.url);
    const running = server;
    running.child.stdout?.destroy();
    // Lines written now fail with EPIPE; the drain writes two more.
    expect((await fetch(`${running.url}/nope`)).status).toBe(404);
    running.child.kill('SIGTERM');
    const code = await exited(running.child);
    expect(code).toBe(0);
  });

  it('finds nothing in flight after a refusal with a request pipelined behind it', async () => {
    server = await startCoffeebuddy(vault.url, ory.url, { SHUTDOWN_TIMEOUT_MS: '20000' });
    const running = server;
    const socket = net.connect(running.port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    const closed = new Promise((resolve) => socket.once('close', resolve));
    socket.on('data', () => undefined);
    socket.write(
      'POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\n{}' +
        'GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n',
    );
    await closed;
    running.child.kill('SIGTERM');
    const code = await exited(running.child);
    expect(code).toBe(0);
    // Counted in flight forever, the drain would wait its 20 s and say it did not drain.
    expect(running.logLines().find((line) => line.msg === 'drain finished')).toMatchObject({
      drained: true,
      requestsAbandoned: 0,
    });
  });
});
