import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { HTTP, type CloudEvent } from 'cloudevents';

/**
 * A loopback stand-in for K_SINK (a Knative Broker's ingress): records every request it gets and
 * answers as told. Nothing of the publisher is faked: it talks HTTP to this server.
 */

/** How the sink answers the next requests. */
export type SinkAnswer =
  /**
   * This status with an empty body (a Kafka Broker answers 202 once the record is written),
   * after delayMs when given (the time a write to Kafka takes).
   */
  | { kind: 'status'; status: number; delayMs?: number }
  /** Accepts the request and never answers. */
  | { kind: 'hang' }
  /** Holds each request until release() answers it. */
  | { kind: 'hold' };

export interface SinkRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface Sink {
  readonly url: string;
  /** Every request received, in order. */
  readonly received: readonly SinkRequest[];
  answer: SinkAnswer;
  /** Connections open to the sink right now: a publisher keeps them alive until it is closed. */
  readonly openConnections: number;
  /** The requests received, read with the `cloudevents` SDK as a consumer would. */
  events(): CloudEvent<unknown>[];
  /** Answers every held request with `status`. */
  release(status: number): void;
  close(): Promise<void>;
}

export async function startSink(
  answer: SinkAnswer = { kind: 'status', status: 202 },
): Promise<Sink> {
  const sockets = new Set<Socket>();
  const received: SinkRequest[] = [];
  const held: http.ServerResponse[] = [];
  const state = { answer };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      received.push({
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
      });
      const current = state.answer;
      if (current.kind === 'status') {
        const send = () => res.writeHead(current.status, { 'content-length': '0' }).end();
        if (current.delayMs === undefined) send();
        else setTimeout(send, current.delayMs);
      } else if (current.kind === 'hold') {
        held.push(res);
      }
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/coffeebuddy/coffeebuddy`,
    received,
    get answer() {
      return state.answer;
    },
    set answer(next: SinkAnswer) {
      state.answer = next;
    },
    get openConnections() {
      return sockets.size;
    },
    events: () =>
      received.map(({ headers, body }) => HTTP.toEvent({ headers, body }) as CloudEvent<unknown>),
    release: (status) => {
      for (const res of held.splice(0)) res.writeHead(status, { 'content-length': '0' }).end();
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
