import net from 'node:net';

export interface Balancer {
  readonly url: string;
  close(): Promise<void>;
}

/**
 * What stands in for a Knative Service's routing to its pods: each connection to 127.0.0.1:<port>
 * goes to the next backend port in turn, skipping one that refuses (a pod gone), and is cut when
 * either side closes. Requests on one connection stay on one backend, as through queue-proxy.
 */
export async function startBalancer(backends: readonly number[]): Promise<Balancer> {
  let next = 0;
  const sockets = new Set<net.Socket>();
  const track = (socket: net.Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  };
  const connect = (client: net.Socket, tried: number) => {
    if (tried >= backends.length) {
      client.destroy();
      return;
    }
    const port = backends[next % backends.length]!;
    next += 1;
    const upstream = net.connect(port, '127.0.0.1');
    track(upstream);
    let connected = false;
    upstream.on('error', () => {
      // Refused: that backend is gone, the next one gets the connection.
      if (connected) client.destroy();
      else connect(client, tried + 1);
    });
    upstream.once('connect', () => {
      connected = true;
      client.pipe(upstream);
      upstream.pipe(client);
      upstream.once('close', () => client.destroy());
      client.once('close', () => upstream.destroy());
    });
  };
  const server = net.createServer((client) => {
    track(client);
    client.on('error', () => undefined);
    connect(client, 0);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
