import type http from 'node:http';
import * as functionsFramework from '@google-cloud/functions-framework';
import type { HttpFunction } from '@google-cloud/functions-framework';
import { getTestServer } from '@google-cloud/functions-framework/testing';

let registered = 0;

/** Serves a function the way functions-framework does, under a fresh name for each call. */
export function serveFunction(handler: HttpFunction): http.Server {
  registered += 1;
  const name = `test_function_${registered}`;
  functionsFramework.http(name, handler);
  return getTestServer(name);
}
