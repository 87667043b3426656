import type http from 'node:http';
import net from 'node:net';
import * as functionsFramework from '@google-cloud/functions-framework';
import type { HttpFunction } from '@google-cloud/functions-framework';
import { getTestServer } from '@google-cloud/functions-framework/testing';

let registered = 0;

/** Serves a function the way functions-framework alone does, under a fresh name for each call. */
export function serveFunction(handler: HttpFunction): http.Server {
  registered += 1;
  const name = `test_function_${registered}`;
  functionsFramework.http(name, handler);
  return getTestServer(name);
}

/** Listens on 127.0.0.1 and a free port; supertest then talks to that address. */
export function listenOnLoopback(server: http.Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/**
 * Sends raw bytes on a new loopback connection and resolves with what came back: one whole answer
 * (by its Content-Length), or everything until the server closed. Fails after 5 s of silence.
 */
export function exchangeRaw(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let received = '';
    socket.setTimeout(5000, () => socket.destroy(new Error('no answer within 5 s')));
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString();
      const end = received.indexOf('\r\n\r\n');
      const length = Number(/content-length: (\d+)/i.exec(received)?.[1] ?? -1);
      if (end >= 0 && length >= 0 && received.length >= end + 4 + length) socket.end();
    });
    socket.on('close', () => {
      resolve(received);
    });
    socket.on('error', reject);
    socket.write(text);
  });
}
