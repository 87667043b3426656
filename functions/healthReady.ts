import type { Response } from '@google-cloud/functions-framework';
import type { ReadinessChecker, ReadinessReport } from '../lib/readiness';
import { JSON_CONTENT_TYPE, sendText } from '../lib/http/respond';
import { READ_METHODS, type Route } from '../lib/http/router';
import { READY_PATH } from '../lib/health';

function render({ ready, components }: ReadinessReport): { status: number; json: string } {
  return ready
    ? { status: 200, json: JSON.stringify({ status: 'ready', components }) }
    : { status: 503, json: JSON.stringify({ detail: { status: 'degraded', components } }) };
}

/** Readiness: 200 when Vault and Ory are usable, else 503 with each component's state in `detail`. */
export function healthReady(checker: ReadinessChecker): Route {
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
