import type http from 'node:http';
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
