import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { Connections } from '../../lib/http/connections';
import { Lifecycle } from '../../lib/lifecycle';
import { eventually } from '../../testing/tools';

const GRACE_MS = 100;
/** Longer than any test runs: a wait that must end for another reason. */
const LONG_MS = 60_000;
const REQUEST = 'GET / HTTP/1.1\r\nHost: x\r\n\r\n';

const servers: http.Server[] = [];
afterEach(() => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    server.close();
  }
});

/**
 * A server whose requests are tracked as the pipeline tracks them, answering "ok" after
 * `answerAfterMs` (never synchronously, as real handlers); `hold` instead keeps each answer
 * until the test writes it.
 */
async function serve({ answerAfterMs = 0, hold = false, graceMs = GRACE_MS, maxMs = 60_000 } = {}) {
  const lifecycle = new Lifecycle();
  const connections = new Connections(lifecycle, graceMs, maxMs);
  const held: http.ServerResponse[] = [];
  const server = http.createServer((req, res) => {
    connections.requestStarted(req, res);
    if (hold) held.push(res);
    else setTimeout(() => res.end('ok'), answerAfterMs);
  });
  connections.attach(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  return { connections, lifecycle, held, port: (server.address() as AddressInfo).port };
}

/** A raw connection with everything the server sent on it, and whether it has closed. */
async function connect(port: number) {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  const state = { received: '', closed: false };
  socket.on('data', (chunk: Buffer) => (state.received += chunk.toString('latin1')));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) =>
    socket.once('close', () => {
      state.closed = true;
      resolve();
    }),
  );
  return { socket, state, closed };
}

/** A raw connection with `count` requests written at once, each held by the server. */
async function pipelined(port: number, held: readonly http.ServerResponse[], count: number) {
  const client = await connect(port);
  client.socket.write(REQUEST.repeat(count));
  await eventually(() => held.length === count);
  return client;
}

/** Holds the event loop, as a starved process or a long synchronous task does. */
function blockLoop(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

const answers = (text: string) => text.split('HTTP/1.1 200 ').length - 1;

describe('Connections during a drain', () => {
  it('answers a request that was waiting in the socket when a late idle check ran', async () => {
    const { connections, port } = await serve();
    const client = await connect(port);
    client.socket.write(REQUEST);
    await eventually(() => answers(client.state.received) === 1);

    connections.beginDrain();
    // The client sends its next request while the loop is held past the idle grace: the idle
    // check's timer then runs before the loop has read that request from the socket.
    await new Promise<void>((resolve) =>
      setImmediate(() => {
        client.socket.write(REQUEST);
        blockLoop(3 * GRACE_MS);
        resolve();
      }),
    );
    await client.closed;
    expect(answers(client.state.received)).toBe(2);
    expect(client.state.received).toMatch(/Connection: close\r\n[^]*ok$/);
  });

  it('still closes a connection that stays idle through the grace', async () => {
    const { connections, port } = await serve();
    const client = await connect(port);
    client.socket.write(REQUEST);
    await eventually(() => answers(client.state.received) === 1);
    connections.beginDrain();
    await client.closed;
    expect(answers(client.state.received)).toBe(1);
    await eventually(() => connections.size === 0);
  });
});

describe('Connections', () => {
  it('closes no idle connection before the drain, and watches those opened during it', async () => {
    const { connections, port } = await serve();
    const before = await connect(port);
    await new Promise((resolve) => setTimeout(resolve, 3 * GRACE_MS));
    expect(before.state.closed).toBe(false);
    connections.beginDrain();
    const during = await connect(port);
    await Promise.all([before.closed, during.closed]);
    expect(during.state.received).toBe('');
  });

  it('keeps a connection whose request is in flight past the grace, and answers it with close', async () => {
    const { connections, lifecycle, port } = await serve({ answerAfterMs: 3 * GRACE_MS });
    const client = await connect(port);
    client.socket.write(REQUEST);
    await eventually(() => lifecycle.inFlight().requests === 1);
    connections.beginDrain();
    await client.closed;
    expect(answers(client.state.received)).toBe(1);
    expect(client.state.received).toMatch(/Connection: close\r\n[^]*ok$/);
  });

  it('tells an answer prepared at the drain to close, and leaves one already started alone', async () => {
    const { connections, held, port } = await serve({ hold: true });
    const [prepared, started] = [await connect(port), await connect(port)];
    prepared.socket.write(REQUEST);
    started.socket.write(REQUEST);
    await eventually(() => held.length === 2);
    const startedRes = held.find((res) => res.req.socket.remotePort === started.socket.localPort)!;
    startedRes.writeHead(200, { 'Content-Length': '2' });
    startedRes.write('o');
    connections.beginDrain();
    for (const res of held) res.end(res === startedRes ? 'k' : 'ok');
    await Promise.all([prepared.closed, started.closed]);
    expect(prepared.state.received).toMatch(/Connection: close\r\n[^]*ok$/);
    expect(started.state.received).toMatch(/^HTTP\/1\.1 200 [^]*ok$/);
  });

  it('keeps a connection on which bytes keep arriving, then answers the request they make', async () => {
    const graceMs = 300;
    const { connections, port } = await serve({ graceMs });
    const client = await connect(port);
    connections.beginDrain();
    // A request head two bytes at a time, each gap a sixth of the grace, the whole twice it.
    for (const part of REQUEST.match(/.{1,2}/gs)!) {
      client.socket.write(part);
      await new Promise((resolve) => setTimeout(resolve, graceMs / 6));
    }
    await client.closed;
    expect(answers(client.state.received)).toBe(1);
  });

  it('closes a connection whose request head trickles in for longer than the idle maximum', async () => {
    const { connections, port } = await serve({ maxMs: 6 * GRACE_MS });
    const client = await connect(port);
    client.socket.write('GET / HTTP/1.1\r\nX-Slow: ');
    connections.beginDrain();
    const trickle = setInterval(() => client.socket.write('x'), GRACE_MS / 4);
    try {
      await client.closed;
    } finally {
      clearInterval(trickle);
    }
    expect(client.state.received).toBe('');
  });

  it('counts an idle connection’s time from the drain, not from the process’s start', async () => {
    const limitMs = 3000;
    // performance.now() counts from the process's start: past the limit, so that counting from
    // there would close the connection at once.
    await eventually(() => performance.now() > limitMs + 500, 10_000);
    const { connections, port } = await serve({ graceMs: limitMs, maxMs: limitMs });
    const client = await connect(port);
    connections.beginDrain();
    for (let turn = 0; turn < 3; turn += 1) await new Promise((resolve) => setImmediate(resolve));
    expect(client.state.closed).toBe(false);
    client.socket.destroy();
  }, 20_000);

  it('counts pipelined requests on one connection until each is answered, in any order of ending', async () => {
    const { connections, lifecycle, held, port } = await serve({ hold: true });
    const client = await pipelined(port, held, 3);
    const socket = held[0]!.req.socket;
    expect([connections.inFlightOn(socket), lifecycle.inFlight().requests]).toEqual([3, 3]);
    // The first and the last answered, the middle one still held: one left on the connection.
    held[0]!.end('ok');
    held[2]!.end('ok');
    await eventually(() => answers(client.state.received) === 1);
    expect(connections.inFlightOn(socket)).toBeGreaterThanOrEqual(1);
    held[1]!.end('ok');
    await eventually(() => answers(client.state.received) === 3);
    await eventually(() => lifecycle.inFlight().requests === 0);
    expect(connections.inFlightOn(socket)).toBe(0);
    // The connection is used again: its next request is counted as before.
    client.socket.write(REQUEST);
    await eventually(() => held.length === 4);
    expect(connections.inFlightOn(socket)).toBe(1);
    held[3]!.end('ok');
    await eventually(() => lifecycle.inFlight().requests === 0);
  });

  it('ends the count of every request still open on a connection that closes', async () => {
    const { connections, lifecycle, held, port } = await serve({ hold: true });
    const client = await pipelined(port, held, 3);
    const socket = held[0]!.req.socket;
    expect(lifecycle.inFlight().requests).toBe(3);
    client.socket.destroy();
    await eventually(() => lifecycle.inFlight().requests === 0);
    expect([connections.inFlightOn(socket), connections.size]).toEqual([0, 0]);
  });

  it('ends the count of requests queued behind an answer that closed their connection', async () => {
    const { lifecycle, held, port } = await serve({ hold: true });
    const client = await pipelined(port, held, 3);
    // The first answer closes the connection; the two queued behind it are never sent (on Node 20
    // they never see 'close' either: only the connection's own close ends their count).
    held[0]!.setHeader('Connection', 'close');
    held[0]!.end('ok');
    await client.closed;
    await eventually(() => lifecycle.inFlight().requests === 0);
    expect(answers(client.state.received)).toBe(1);
  });

  it('allClosed: true at once with none open, false at its timeout, true once the last closes', async () => {
    const { connections, port } = await serve();
    expect(await connections.allClosed(LONG_MS)).toBe(true);
    const [a, b] = [await connect(port), await connect(port)];
    await eventually(() => connections.size === 2);
    expect(await connections.allClosed(10)).toBe(false);
    let settled: boolean | undefined;
    void connections.allClosed(LONG_MS).then((result) => (settled = result));
    a.socket.destroy();
    await eventually(() => connections.size === 1);
    await new Promise((resolve) => setImmediate(resolve));
    expect(settled).toBeUndefined();
    b.socket.destroy();
    await eventually(() => settled !== undefined);
    expect(settled).toBe(true);
  });
});
