import http from 'node:http';
import net from 'node:net';
import request from 'supertest';
import { appHarness } from '../testing/app';
import { exchangeRaw } from '../testing/server';
import { metricValue } from '../testing/metrics-text';
import { eventually } from '../testing/tools';

/** createServer: the image's pipeline, in-process. */

const build = appHarness({ env: { READINESS_TIMEOUT_MS: '60000', READINESS_CACHE_TTL_MS: '0' } });

const unmatchedCount = (metrics: string, method: string): number | undefined =>
  metricValue(metrics, 'coffeebuddy_http_requests_total', {
    method,
    route: 'unmatched',
    status: '404',
  });

describe('paths no route serves', () => {
  it.each(['/favicon.ico', '/robots.txt', '/nope'])(
    '%s: JSON 404, counted as unmatched, with an access line',
    async (path) => {
      const { server, app, logs } = await build();
      const res = await request(server).get(path).expect(404);
      expect(res.body).toEqual({ error: 'not found' });
      expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
      expect(unmatchedCount(await app.registry.metrics(), 'GET')).toBe(1);
      expect(logs.filter((line) => line.msg === 'request')).toEqual([
        expect.objectContaining({ method: 'GET', route: 'unmatched', status: 404 }),
      ]);
    },
  );

  it.each(['OPTIONS', 'GET'])('%s * is answered as any unknown path', async (method) => {
    const { server, app } = await build();
    const { port } = server.address() as net.AddressInfo;
    const answer = await exchangeRaw(
      port,
      `${method} * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 404 [^]*\r\n\r\n\{"error":"not found"\}$/);
    expect(unmatchedCount(await app.registry.metrics(), method)).toBe(1);
  });
});

describe('the drain, in-process', () => {
  it('tells a request in flight at the signal to close its connection, then exits 0', async () => {
    const { server, shutdown, exits, vault } = await build();
    vault.held = true;
    const { port } = server.address() as net.AddressInfo;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const answer = new Promise<http.IncomingMessage>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: '/health/ready', agent }, resolve)
        .on('error', reject);
    });
    await eventually(() => vault.calls > 0);
    shutdown.onSignal('SIGTERM');
    vault.release();
    const res = await answer;
    res.resume();
    expect(res.statusCode).toBe(200);
    expect(res.headers.connection).toBe('close');
    await eventually(() => exits.length > 0);
    expect(exits).toEqual([0]);
    agent.destroy();
  });
});
