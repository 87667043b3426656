import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { Connections } from '../../lib/http/connections';
import { Lifecycle } from '../../lib/lifecycle';
import { eventually } from '../../testing/tools';

const GRACE_MS = 100;
const REQUEST = 'GET / HTTP/1.1\r\nHost: x\r\n\r\n';

const servers: http.Server[] = [];
afterEach(() => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    server.close();
  }
});

/** A server whose requests are tracked as the pipeline tracks them, answering "ok". */
async function serve(): Promise<{ connections: Connections; port: number }> {
  const connections = new Connections(new Lifecycle(), GRACE_MS);
  const server = http.createServer((req, res) => {
    connections.requestStarted(req, res);
    res.end('ok');
  });
  connections.attach(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  return { connections, port: (server.address() as AddressInfo).port };
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
