import { sendJson } from '../lib/http/respond';
import { READ_METHODS, type Route } from '../lib/http/router';
import { LIVE_PATH } from '../lib/health';

/** Liveness: answers from memory alone, so a slow or absent dependency never restarts the pod. */
export function healthLive(): Route {
  return {
    name: 'healthLive',
    path: LIVE_PATH,
    methods: READ_METHODS,
    handler: (_req, res) => {
      sendJson(res, 200, { status: 'live' });
    },
  };
}
