import type { ServerResponse as Response } from 'node:http';
import type { Lifecycle } from '../lib/lifecycle';
import type { ReadinessChecker, ReadinessReport } from '../lib/readiness';
import { JSON_CONTENT_TYPE, sendText } from '../lib/http/respond';
import { READ_METHODS, type Route } from '../lib/http/router';
import { READY_PATH } from '../lib/health';

function render({ ready, components }: ReadinessReport): { status: number; json: string } {
  return ready
    ? { status: 200, json: JSON.stringify({ status: 'ready', components }) }
    : { status: 503, json: JSON.stringify({ detail: { status: 'degraded', components } }) };
}

const DRAINING_JSON = JSON.stringify({ detail: { status: 'draining' } });

/**
 * Readiness: 200 when every component the checker asks is usable (Vault and Ory; the Slack signing
 * secret when it is read from Vault; PostgreSQL when the app uses the database), else 503 with
 * each component's state in `detail`; 503 at once while the process drains, so that no new
 * traffic is sent its way.
 */
export function healthReady(checker: ReadinessChecker, lifecycle: Lifecycle): Route {
  // Probes come every few milliseconds and the report changes once per TTL at most: a fresh
  // report is answered at once, rendered once.
  let last: { report: ReadinessReport; status: number; json: string } | undefined;
  const answer = (res: Response, report: ReadinessReport) => {
    if (last?.report !== report) last = { report, ...render(report) };
    sendText(res, last.status, JSON_CONTENT_TYPE, last.json);
  };
  return {
    name: 'healthReady',
    path: READY_PATH,
    methods: READ_METHODS,
    handler: (_req, res) => {
      if (lifecycle.draining) {
        sendText(res, 503, JSON_CONTENT_TYPE, DRAINING_JSON);
        return undefined;
      }
      const fresh = checker.peek();
      if (fresh !== undefined) {
        answer(res, fresh);
        return undefined;
      }
      return checker.check().then((report) => {
        answer(res, report);
      });
    },
  };
}
