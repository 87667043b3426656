import http from 'node:http';
import net from 'node:net';
import { Lifecycle } from '../../lib/lifecycle';
import { createLogger } from '../../lib/logger';
import { Connections } from '../../lib/http/connections';
import { RELEASE_TIMEOUT_MS, Shutdown } from '../../lib/http/shutdown';
import { eventually } from '../../testing/tools';

const servers: http.Server[] = [];
const sockets: net.Socket[] = [];
afterEach(() => {
  for (const socket of sockets.splice(0)) socket.destroy();
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    server.close();
  }
});

interface HarnessOptions {
  timeoutMs?: number;
  release?: () => void | Promise<void>;
  now?: () => number;
  /** The connections' idle grace while draining (DRAIN_IDLE_GRACE_MS unless said). */
  idleGraceMs?: number;
  /** The server's answer; 'ok' at once unless said. */
  handler?: http.RequestListener;
}

/** A Shutdown over a real server on loopback, with exit() recorded instead of ending jest. */
async function harness(timeoutMsOrOptions: number | HarnessOptions = {}) {
  const options =
    typeof timeoutMsOrOptions === 'number' ? { timeoutMs: timeoutMsOrOptions } : timeoutMsOrOptions;
  const lifecycle = new Lifecycle();
  const logs: Record<string, unknown>[] = [];
  const exits: number[] = [];
  const faults: string[] = [];
  const connections = new Connections(lifecycle, options.idleGraceMs);
  const handler = options.handler ?? ((_req, res) => res.end('ok'));
  // Each request counted in flight, as the pipeline counts it.
  const server = http.createServer((req, res) => {
    connections.requestStarted(req, res);
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  connections.attach(server);
  const released: number[] = [];
  const shutdown = new Shutdown({
    server,
    connections,
    lifecycle,
    release:
      options.release ??
      (() => {
        released.push(exits.length);
      }),
    logger: createLogger('debug', (line) => logs.push(JSON.parse(line) as Record<string, unknown>)),
    timeoutMs: options.timeoutMs ?? 60_000,
    observeFault: (kind) => faults.push(kind),
    exit: (code) => exits.push(code),
    ...(options.now === undefined ? {} : { now: options.now }),
  });
  const { port } = server.address() as net.AddressInfo;
  return { lifecycle, logs, exits, faults, server, shutdown, released, port };
}

/** A client connection to `port`, open until the test ends; resolves once the server has it. */
async function connect(port: number, server: http.Server): Promise<net.Socket> {
  const accepted = new Promise((resolve) => server.once('connection', resolve));
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  sockets.push(socket);
  await accepted;
  return socket;
}

const finished = (logs: Record<string, unknown>[]) => logs.find((l) => l.msg === 'drain finished');

describe('Shutdown', () => {
  it('waits for work after an answer (a Slack handler after its ack) before it exits', async () => {
    const { lifecycle, exits, shutdown, server, logs, released } = await harness();
    let release!: () => void;
    void lifecycle.track(new Promise<void>((resolve) => (release = resolve)));
    shutdown.onSignal('SIGTERM');
    expect(lifecycle.draining).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(exits).toEqual([]);
    expect(server.listening).toBe(false);
    release();
    await eventually(() => exits.length > 0);
    expect(exits).toEqual([0]);
    expect(logs.map((l) => l.msg)).toEqual(['drain started', 'drain finished']);
    expect(logs[0]).toMatchObject({
      level: 'info',
      reason: 'signal SIGTERM',
      requests: 0,
      work: 1,
      connections: 0,
      timeoutMs: 60_000,
    });
    expect(logs[1]).toMatchObject({
      level: 'info',
      reason: 'signal SIGTERM',
      drained: true,
      requestsAbandoned: 0,
      workAbandoned: 0,
      connectionsCut: 0,
      exitCode: 0,
    });
    // Clients are released last, before the exit.
    expect(released).toEqual([0]);
  });

  it('exits at once on a second signal, with 128 + its number', async () => {
    const { lifecycle, exits, shutdown, logs } = await harness(100);
    lifecycle.requestStarted();
    shutdown.onSignal('SIGTERM');
    shutdown.onSignal('SIGTERM');
    expect(exits).toEqual([143]);
    expect(logs).toContainEqual(
      expect.objectContaining({
        level: 'warn',
        msg: 'second signal: exiting at once',
        signal: 'SIGTERM',
      }),
    );
    // In a process that was the end; here the drain still runs out, then calls exit too.
    await eventually(() => exits.length === 2);
  });

  it('drains after a fault, logs its kind and name only, counts it, and exits 1', async () => {
    const { exits, shutdown, logs, faults } = await harness();
    shutdown.onFault('unhandled_rejection', new TypeError('secret-in-message'));
    await eventually(() => exits.length > 0);
    expect(exits).toEqual([1]);
    expect(faults).toEqual(['unhandled_rejection']);
    expect(logs[0]).toEqual(
      expect.objectContaining({
        level: 'error',
        msg: 'fault outside a request',
        kind: 'unhandled_rejection',
        error: 'TypeError',
      }),
    );
    expect(logs[1]).toMatchObject({ msg: 'drain started', reason: 'unhandled_rejection' });
    expect(finished(logs)).toMatchObject({ reason: 'unhandled_rejection', exitCode: 1 });
    expect(JSON.stringify(logs)).not.toContain('secret-in-message');
  });

  it('exits at once with 130 on a second SIGINT, and 128 for a signal it has no number for', async () => {
    const interrupted = await harness(100);
    interrupted.lifecycle.requestStarted();
    interrupted.shutdown.onSignal('SIGINT');
    interrupted.shutdown.onSignal('SIGINT');
    expect(interrupted.exits).toEqual([130]);
    const hungUp = await harness(100);
    hungUp.lifecycle.requestStarted();
    hungUp.shutdown.onSignal('SIGHUP');
    hungUp.shutdown.onSignal('SIGHUP');
    expect(hungUp.exits).toEqual([128]);
    await eventually(() => interrupted.exits.length === 2 && hungUp.exits.length === 2);
  });

  it('past the timeout, names what it abandons: requests, work and the connections it cuts', async () => {
    const { lifecycle, exits, shutdown, logs, port, server } = await harness({
      timeoutMs: 100,
      // Never answers: the request stays in flight, its connection open.
      handler: () => undefined,
    });
    void lifecycle.track(new Promise<void>(() => undefined));
    const socket = await connect(port, server);
    const requested = new Promise((resolve) => server.once('request', resolve));
    socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await requested;
    shutdown.onSignal('SIGTERM');
    await eventually(() => exits.length > 0);
    expect(exits).toEqual([0]);
    expect(finished(logs)).toMatchObject({
      drained: false,
      requestsAbandoned: 1,
      workAbandoned: 1,
      connectionsCut: 1,
      exitCode: 0,
    });
  });

  it('gives the connections what is left of the timeout once requests and work are done', async () => {
    // The clock stands still: the whole timeout is left for the idle connection to close (20 ms).
    const still = await harness({ timeoutMs: 1000, idleGraceMs: 20, now: () => 10_000 });
    await connect(still.port, still.server);
    still.shutdown.onSignal('SIGTERM');
    await eventually(() => still.exits.length > 0);
    expect(finished(still.logs)).toMatchObject({
      drained: true,
      durationMs: 0,
      connectionsCut: 0,
    });

    // 9,995 of 10,000 ms pass at once: 5 ms are left, too few for a connection that closes after
    // 2 s idle, which the whole timeout would see close (2 s rather than the first case's 20 ms,
    // so that a machine too busy to run a 5 ms timer on time cannot see it close first).
    let calls = 0;
    const late = await harness({
      timeoutMs: 10_000,
      idleGraceMs: 2000,
      now: () => (calls++ === 0 ? 10_000 : 19_995),
    });
    await connect(late.port, late.server);
    late.shutdown.onSignal('SIGTERM');
    await eventually(() => late.exits.length > 0);
    expect(finished(late.logs)).toMatchObject({
      drained: false,
      durationMs: 9995,
      connectionsCut: 1,
    });
  });

  it('exits after clients failed to release, naming the error only', async () => {
    const { exits, shutdown, logs } = await harness({
      release: () => Promise.reject(new TypeError('secret-in-message')),
    });
    shutdown.onSignal('SIGTERM');
    await eventually(() => exits.length > 0);
    expect(exits).toEqual([0]);
    expect(logs.map((l) => l.msg)).toEqual([
      'drain started',
      'releasing clients failed',
      'drain finished',
    ]);
    expect(logs[1]).toEqual(expect.objectContaining({ level: 'warn', error: 'TypeError' }));
    expect(JSON.stringify(logs)).not.toContain('secret-in-message');
  });

  it('exits after RELEASE_TIMEOUT_MS when releasing clients never ends, and says so', async () => {
    const { exits, shutdown, logs } = await harness({
      release: () => new Promise<void>(() => undefined),
    });
    shutdown.onSignal('SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, RELEASE_TIMEOUT_MS / 2));
    expect(exits).toEqual([]);
    await eventually(() => exits.length > 0);
    expect(exits).toEqual([0]);
    expect(logs.map((l) => l.msg)).toEqual([
      'drain started',
      'releasing clients timed out',
      'drain finished',
    ]);
    expect(logs[1]).toEqual(
      expect.objectContaining({ level: 'warn', timeoutMs: RELEASE_TIMEOUT_MS }),
    );
  });
});
