import { Counter, Gauge, Registry, register as globalRegistry } from 'prom-client';
import request from 'supertest';
import { buildOryClient } from '../lib/clients/ory';
import { buildVaultClient } from '../lib/clients/vault';
import { loadSettings } from '../lib/config/settings';
import type { Settings } from '../lib/config/settings';
import { appHarness, type HarnessOptions } from '../testing/app';
import { itWithCommand, promtoolCheckMetrics } from '../testing/tools';
import { startOryStandIn, startVaultStandIn } from '../testing/standins';

const TEST_ENV = { READINESS_TIMEOUT_MS: '200', READINESS_CACHE_TTL_MS: '0' };
const testSettings = (env: NodeJS.ProcessEnv = {}): Settings =>
  loadSettings({ ...TEST_ENV, ...env });
const build = appHarness({ env: TEST_ENV });
const harness = (options: HarnessOptions = {}, fn = 'coffeebuddy') => build({ ...options, fn });

describe('GET /health/live', () => {
  it('answers 200 live', async () => {
    const { server } = await harness();
    const res = await request(server).get('/health/live').expect(200);
    expect(res.body).toEqual({ status: 'live' });
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.headers['cache-control']).toBe('no-store');
  });

  it('answers HEAD without a body', async () => {
    const { server } = await harness();
    const res = await request(server).head('/health/live').expect(200);
    expect(res.text).toBeUndefined();
  });

  it('answers 200 while both dependencies hang and readiness waits for them', async () => {
    const { server, vault, ory } = await harness({
      settings: testSettings({ READINESS_TIMEOUT_MS: '60000' }),
    });
    vault.held = true;
    ory.held = true;
    let readyAnswered = false;
    const ready = request(server)
      .get('/health/ready')
      .then((res) => {
        readyAnswered = true;
        return res;
      });
    await request(server).get('/health/live').expect(200);
    expect(readyAnswered).toBe(false);
    vault.release();
    ory.release();
    expect((await ready).status).toBe(200);
  });
});

describe('GET /health/ready', () => {
  it('answers 200 with both components when Vault and Ory are healthy', async () => {
    const { server } = await harness();
    const res = await request(server).get('/health/ready').expect(200);
    expect(res.body).toEqual({
      status: 'ready',
      components: {
        vault: { status: 'ok', latencyMs: 1, checkedAt: expect.any(String) },
        ory: { status: 'ok', latencyMs: 1, checkedAt: expect.any(String) },
      },
    });
  });

  it.each(['vault', 'ory'] as const)(
    'answers 503 with detail when %s is unavailable',
    async (down) => {
      const h = await harness();
      h[down].status = 'unavailable';
      h[down].error = 'sealed';
      const res = await request(h.server).get('/health/ready').expect(503);
      const up = down === 'vault' ? 'ory' : 'vault';
      expect(res.body).toEqual({
        detail: {
          status: 'degraded',
          components: {
            [down]: {
              status: 'unavailable',
              latencyMs: 1,
              checkedAt: expect.any(String),
              error: 'sealed',
            },
            [up]: { status: 'ok', latencyMs: 1, checkedAt: expect.any(String) },
          },
        },
      });
    },
  );

  // How soon is a deadline: test/system/faults.test.ts; that check() answers at all: readiness.test.ts.
  it('answers 503 naming the timeout when a dependency hangs', async () => {
    const { server, vault } = await harness();
    vault.held = true;
    const res = await request(server).get('/health/ready').expect(503);
    expect(res.body.detail.components.vault).toMatchObject({ error: 'timeout after 200 ms' });
    vault.release();
  });

  it('logs each change of state once, as one JSON line with the reason', async () => {
    const { server, vault, logs } = await harness();
    for (let i = 0; i < 5; i += 1) await request(server).get('/health/ready');
    vault.status = 'unavailable';
    vault.error = 'connection refused';
    for (let i = 0; i < 5; i += 1) await request(server).get('/health/ready');
    vault.status = 'ok';
    vault.error = undefined;
    for (let i = 0; i < 5; i += 1) await request(server).get('/health/ready');
    const transitions = logs.filter((line) => line.component === 'vault');
    expect(transitions).toEqual([
      expect.objectContaining({
        level: 'info',
        component: 'vault',
        status: 'ok',
        previous: 'unknown',
      }),
      expect.objectContaining({
        level: 'warn',
        msg: 'vault is unavailable',
        status: 'unavailable',
        previous: 'ok',
        reason: 'connection refused',
      }),
      expect.objectContaining({
        level: 'info',
        msg: 'vault is available',
        previous: 'unavailable',
      }),
    ]);
  });

  it('checks real Vault and Ory stand-ins through the default clients', async () => {
    const vault = await startVaultStandIn('standby');
    const ory = await startOryStandIn(true);
    try {
      const { server } = await harness({
        env: { VAULT_ADDR: vault.url, ORY_URL: ory.url },
        vaultClientFactory: buildVaultClient,
        oryClientFactory: buildOryClient,
      });
      await request(server).get('/health/ready').expect(200);
      vault.state = 'sealed';
      const res = await request(server).get('/health/ready').expect(503);
      expect(res.body.detail.components.vault.error).toBe('sealed');
    } finally {
      await Promise.all([vault.close(), ory.close()]);
    }
  });
});

describe('GET /health/ready while draining', () => {
  it('answers 503 at once, without asking the dependencies', async () => {
    const { app, server, vault } = await harness();
    app.lifecycle.beginDrain();
    const res = await request(server).get('/health/ready').expect(503);
    expect(res.body).toEqual({ detail: { status: 'draining' } });
    expect(vault.calls).toBe(0);
  });
});

describe('GET /metrics', () => {
  it('serves the registry it was given, with a test counter and the runtime families', async () => {
    const registry = new Registry();
    new Counter({ name: 'test_counter_total', help: 'A test counter.', registers: [registry] }).inc(
      3,
    );
    const { server } = await harness({ registry });
    await request(server).get('/health/live');
    const res = await request(server).get('/metrics').expect(200);
    expect(res.headers['content-type']).toBe(registry.contentType);
    expect(res.text).toContain('test_counter_total 3');
    expect(res.text).toContain(
      'coffeebuddy_http_requests_total{method="GET",route="/health/live",status="200"} 1',
    );
    expect(res.text).toContain('coffeebuddy_dependency_up{component="vault"} 1');
    expect(res.text).toContain('coffeebuddy_dependency_up{component="ory"} 1');
    expect(res.text).toMatch(/coffeebuddy_build_info\{version="[^"]+",node_version="v\d+/);
    expect(res.text).toContain('process_cpu_user_seconds_total');
    expect(res.text).toContain(
      'coffeebuddy_dependency_check_duration_seconds_count{component="vault"}',
    );
  });

  it('uses a registry of its own by default, never the global one', async () => {
    const { app, server } = await harness();
    await request(server).get('/metrics').expect(200);
    expect(app.registry).not.toBe(globalRegistry);
    expect(globalRegistry.getSingleMetric('coffeebuddy_http_requests_total')).toBeUndefined();
  });

  it('reports a dependency going down at the next scrape', async () => {
    const { server, ory } = await harness();
    await request(server).get('/metrics').expect(200);
    ory.status = 'unavailable';
    const res = await request(server).get('/metrics').expect(200);
    expect(res.text).toContain('coffeebuddy_dependency_up{component="ory"} 0');
  });

  it('serves METRICS_PATH instead of /metrics', async () => {
    const { server } = await harness({
      settings: testSettings({ METRICS_PATH: '/internal/metrics' }),
    });
    await request(server).get('/internal/metrics').expect(200);
    await request(server).get('/metrics').expect(404);
  });

  it('labels requests by route template, so 1,000 random paths add one series', async () => {
    const { server } = await harness();
    for (let i = 0; i < 1000; i += 1) {
      const path = `/${Math.random().toString(36).slice(2)}/${i}`;
      await request(server).get(path).expect(404);
    }
    const res = await request(server).get('/metrics').expect(200);
    const routes = new Set(
      [...res.text.matchAll(/coffeebuddy_http_requests_total\{[^}]*route="([^"]*)"/g)].map(
        (m) => m[1],
      ),
    );
    // The route templates (each started at 0) and one label for every unknown path.
    expect([...routes].sort()).toEqual(
      [
        '/health/live',
        '/health/ready',
        '/metrics',
        '/slack/commands',
        '/slack/events',
        '/slack/interactions',
        'unmatched',
      ].sort(),
    );
    expect(res.text).toContain(
      'coffeebuddy_http_requests_total{method="GET",route="unmatched",status="404"} 1000',
    );
  });

  itWithCommand('promtool', 'apt-get install prometheus')(
    'passes promtool check metrics with nothing reported',
    async () => {
      const { server } = await harness();
      await request(server).get('/health/ready');
      await request(server).get('/nope');
      const res = await request(server).get('/metrics').expect(200);
      expect(promtoolCheckMetrics(res.text)).toEqual({ status: 0, output: '' });
    },
  );

  it('answers 500 without details when collecting fails', async () => {
    const registry = new Registry();
    new Gauge({
      name: 'broken_gauge',
      help: 'Fails to collect.',
      registers: [registry],
      collect() {
        throw new Error('internal-detail');
      },
    });
    const { server, logs } = await harness({ registry });
    const res = await request(server).get('/metrics').expect(500);
    expect(res.body).toEqual({ error: 'internal error' });
    expect(res.text).not.toContain('internal-detail');
    expect(logs).toContainEqual(expect.objectContaining({ level: 'error', route: '/metrics' }));
  });
});

describe('routing and bad input', () => {
  it('answers an unknown path with 404 JSON', async () => {
    const { server } = await harness();
    for (const path of [
      '/',
      '/nope',
      '/health',
      '/health/live/',
      '//health/live',
      '/health/%6Cive',
    ]) {
      const res = await request(server).get(path).expect(404);
      expect(res.body).toEqual({ error: 'not found' });
    }
  });

  it.each(['post', 'put', 'delete', 'patch', 'options'] as const)(
    'answers %s on a known path with 405 and Allow',
    async (method) => {
      const { server } = await harness();
      for (const path of ['/health/live', '/health/ready', '/metrics']) {
        const res = await request(server)[method](path).expect(405);
        expect(res.headers.allow).toBe('GET, HEAD');
        expect(res.body).toEqual({ error: 'method not allowed' });
      }
    },
  );

  it('never parses a body sent to a route that takes none, and refuses one over the limit', async () => {
    const { server } = await harness();
    // Parsed, either would fail: malformed JSON, and a form nested past qs's depth limit.
    await request(server)
      .get('/health/live')
      .set('Content-Type', 'application/json')
      .send('{"not json')
      .expect(200, { status: 'live' });
    await request(server)
      .get('/health/live')
      .set('Content-Type', 'application/x-www-form-urlencoded')
      .send(`a${'[b]'.repeat(40)}=1`)
      .expect(200, { status: 'live' });
    await request(server)
      .get('/health/live')
      .set('Content-Type', 'application/octet-stream')
      .send(Buffer.alloc(2 * 1024 * 1024, 1))
      .expect(413, { error: 'request too large' });
    await request(server)
      .post('/health/live')
      .set('Content-Type', 'application/json')
      .send('{"not json')
      .expect(405);
  });

  it('keeps working after odd query strings', async () => {
    const { server } = await harness();
    await request(server).get('/health/live?%zz=%%&a[b][c]=1&__proto__[x]=1').expect(200);
    await request(server)
      .get(`/health/live?q=${'x'.repeat(7000)}`)
      .expect(200);
    await request(server).get('/health/live').expect(200, { status: 'live' });
  });
});

describe('functions deployed alone', () => {
  it.each([
    ['healthLive', 200],
    ['healthReady', 200],
    ['metrics', 200],
  ])('%s answers on any path and guards its methods', async (name, status) => {
    const { server } = await harness({}, name);
    await request(server).get('/').expect(status);
    await request(server).get('/anything/else').expect(status);
    await request(server).post('/').expect(405);
  });

  it('the coffeebuddy entry and every endpoint are functions of the app', async () => {
    expect(Object.keys((await harness()).app.functions).sort()).toEqual(
      ['coffeebuddy', 'healthLive', 'healthReady', 'metrics', 'slack'].sort(),
    );
  });
});
