import type { ReadinessChecker } from '../lib/readiness';
import { sendJson } from '../lib/respond';
import { READ_METHODS, type Route } from '../lib/router';
import { READY_PATH } from '../lib/types';

/** Readiness: 200 when Vault and Ory are usable, else 503 with each component's state in `detail`. */
export function healthReady(checker: ReadinessChecker): Route {
  return {
    name: 'healthReady',
    path: READY_PATH,
    methods: READ_METHODS,
    handler: async (_req, res) => {
      const { ready, components } = await checker.check();
      if (ready) {
        sendJson(res, 200, { status: 'ready', components });
      } else {
        sendJson(res, 503, { detail: { status: 'degraded', components } });
      }
    },
  };
}
