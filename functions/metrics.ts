import type { Registry } from 'prom-client';
import { READ_METHODS, type Route } from '../lib/router';

/** Prometheus exposition of the app's own registry, in the registry's content type. */
export function metrics(registry: Registry, path: string): Route {
  return {
    name: 'metrics',
    path,
    methods: READ_METHODS,
    handler: async (_req, res) => {
      const body = await registry.metrics();
      res.status(200).set({ 'Content-Type': registry.contentType, 'Cache-Control': 'no-store' });
      res.send(body);
    },
  };
}
