import * as functionsFramework from '@google-cloud/functions-framework';
import { getTestServer } from '@google-cloud/functions-framework/testing';
import request from 'supertest';
import { sendJson } from '../../lib/http/respond';
import { Router, type Route } from '../../lib/http/router';
import { createLogger } from '../../lib/logger';

/** A router over `routes`, with the lines its logger wrote. */
function routerOf(routes: Route[]) {
  const logs: Record<string, unknown>[] = [];
  const logger = createLogger('debug', (line) =>
    logs.push(JSON.parse(line) as Record<string, unknown>),
  );
  return { router: new Router(routes, logger), logs };
}

const answering = (path: string, methods: string[], extra: Partial<Route> = {}): Route => ({
  name: path.slice(1),
  path,
  methods,
  handler: (_req, res) => {
    sendJson(res, 200, { from: path });
  },
  ...extra,
});

let served = 0;
/** The router's function as functions-framework serves it alone (`--target`). */
function serveAlone(fn: functionsFramework.HttpFunction) {
  served += 1;
  const name = `router_test_${served}`;
  functionsFramework.http(name, fn);
  return getTestServer(name);
}

describe('Router', () => {
  it('refuses two routes on one path', () => {
    expect(() => routerOf([answering('/a', ['GET']), answering('/a', ['POST'])])).toThrow(
      'two routes share a path',
    );
  });

  it('routes by exact path, and a router of one route serves every path', () => {
    const a = answering('/a', ['GET']);
    const b = answering('/b', ['GET']);
    const { router: two } = routerOf([a, b]);
    expect([two.routeFor('/a'), two.routeFor('/b'), two.routeFor('/c')]).toEqual([a, b, undefined]);
    const { router: one } = routerOf([a]);
    expect(one.routeFor('/elsewhere')).toBe(a);
  });

  it('refuses an unknown path with 404 and another method with 405 and Allow', () => {
    const { router } = routerOf([answering('/a', ['GET', 'HEAD'])]);
    const route = router.routeFor('/a');
    expect(router.refusal(undefined, 'GET')).toEqual({ status: 404, error: 'not found' });
    expect(router.refusal(route, 'GET')).toBeUndefined();
    expect(router.refusal(route, 'POST')).toEqual({
      status: 405,
      error: 'method not allowed',
      headers: { Allow: 'GET, HEAD' },
    });
    expect(router.refusal(route, undefined)).toEqual(router.refusal(route, 'POST'));
  });

  describe('as a function', () => {
    const { router } = routerOf([answering('/a', ['GET']), answering('/b', ['POST'])]);
    const server = serveAlone(router.invoke);

    it('runs the route of the path', async () => {
      const res = await request(server).get('/a');
      expect([res.status, res.body]).toEqual([200, { from: '/a' }]);
    });

    it('answers 404 in JSON for an unknown path', async () => {
      const res = await request(server).get('/c');
      expect([res.status, res.body]).toEqual([404, { error: 'not found' }]);
    });

    it('answers 405 in JSON with Allow for another method, without running the handler', async () => {
      const res = await request(server).get('/b');
      expect([res.status, res.body, res.headers.allow]).toEqual([
        405,
        { error: 'method not allowed' },
        'POST',
      ]);
    });
  });

  describe('a failing handler', () => {
    const failing = (handler: Route['handler']) => {
      const { router, logs } = routerOf([answering('/fails', ['GET'], { handler })]);
      return { server: serveAlone(router.invoke), logs };
    };
    const failed = [{ level: 'error', msg: 'request failed', route: '/fails', error: 'Error' }];

    it('answers 500 without details and logs the route when it throws', async () => {
      const { server, logs } = failing(() => {
        throw new Error('secret detail');
      });
      const res = await request(server).get('/fails');
      expect([res.status, res.body]).toEqual([500, { error: 'internal error' }]);
      expect(logs).toMatchObject(failed);
      expect(JSON.stringify(logs)).not.toContain('secret detail');
    });

    it('answers 500 when it rejects', async () => {
      const { server, logs } = failing(() => Promise.reject(new Error('secret detail')));
      const res = await request(server).get('/fails');
      expect([res.status, res.body]).toEqual([500, { error: 'internal error' }]);
      expect(logs).toMatchObject(failed);
    });

    it('keeps the answer it sent before failing', async () => {
      const { server, logs } = failing((_req, res) => {
        sendJson(res, 202, { sent: true });
        throw new Error('after the answer');
      });
      const res = await request(server).get('/fails');
      expect([res.status, res.body]).toEqual([202, { sent: true }]);
      expect(logs).toMatchObject(failed);
    });
  });

  describe('served alone, a route that admits', () => {
    const guarded = (admit: Route['admit']) => {
      let ran = 0;
      let asked = 0;
      const { router, logs } = routerOf([
        answering('/guarded', ['POST'], {
          admit: (req, res) => {
            asked += 1;
            return admit?.(req, res);
          },
          handler: (_req, res) => {
            ran += 1;
            sendJson(res, 200, { ran: true });
          },
        }),
      ]);
      return {
        server: serveAlone(router.invokeAlone),
        logs,
        ran: () => ran,
        asked: () => asked,
      };
    };

    it('runs the handler once admitted', async () => {
      const g = guarded(() => undefined);
      const res = await request(g.server).post('/guarded');
      expect([res.status, res.body, g.asked(), g.ran()]).toEqual([200, { ran: true }, 1, 1]);
    });

    it('answers the refusal, with its headers, and never runs the handler', async () => {
      const g = guarded(() =>
        Promise.resolve({
          status: 401,
          error: 'unauthenticated',
          headers: { 'X-Why': 'no token' },
        }),
      );
      const res = await request(g.server).post('/guarded');
      expect([res.status, res.body, res.headers['x-why'], g.ran()]).toEqual([
        401,
        { error: 'unauthenticated' },
        'no token',
        0,
      ]);
    });

    it('answers 405 to another method without asking', async () => {
      const g = guarded(() => undefined);
      const res = await request(g.server).get('/guarded');
      expect([res.status, res.body, g.asked(), g.ran()]).toEqual([
        405,
        { error: 'method not allowed' },
        0,
        0,
      ]);
    });

    it('answers 500 and logs when admission fails', async () => {
      const g = guarded(() => Promise.reject(new TypeError('secret detail')));
      const res = await request(g.server).post('/guarded');
      expect([res.status, res.body, g.ran()]).toEqual([500, { error: 'internal error' }, 0]);
      expect(g.logs).toMatchObject([
        { level: 'error', msg: 'request failed', route: '/guarded', error: 'TypeError' },
      ]);
    });
  });
});
