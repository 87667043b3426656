import type { Registry } from 'prom-client';
import { sendText } from '../lib/http/respond';
import { READ_METHODS, type Route } from '../lib/http/router';

/** Prometheus exposition of the app's own registry, in the registry's content type. */
export function metrics(registry: Registry, path: string): Route {
  return {
    name: 'metrics',
    path,
    methods: READ_METHODS,
    handler: async (_req, res) => {
      sendText(res, 200, registry.contentType, await registry.metrics());
    },
  };
}
