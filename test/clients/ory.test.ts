import { HttpOryClient, buildOryClient } from '../../lib/clients/ory';
import { loadSettings } from '../../lib/config/settings';
import { UPSTREAM_CANARY, startOryStandIn, type OryStandIn } from '../../testing/standins';

describe('HttpOryClient', () => {
  let ory: OryStandIn;

  beforeAll(async () => {
    ory = await startOryStandIn();
  });
  beforeEach(() => {
    ory.ready = true;
    ory.fault = { kind: 'none' };
  });
  afterAll(() => ory.close());

  it('is ok when /health/ready answers 200 and unavailable on 503, without the body', async () => {
    const client = new HttpOryClient(ory.url, '/health/ready', 500);
    try {
      expect(await client.healthCheck()).toMatchObject({ status: 'ok' });
      ory.ready = false;
      const health = await client.healthCheck();
      expect(health).toMatchObject({ status: 'unavailable', error: 'status 503' });
      expect(JSON.stringify(health)).not.toContain(UPSTREAM_CANARY);
    } finally {
      client.close();
    }
  });

  it('asks the configured path under a base URL that has a path of its own', async () => {
    const settings = loadSettings({ ORY_URL: `${ory.url}/`, ORY_HEALTH_PATH: '/health/alive' });
    const client = buildOryClient(settings);
    try {
      ory.ready = false; // alive does not look at readiness
      expect(await client.healthCheck()).toMatchObject({ status: 'ok' });
    } finally {
      client.close?.();
    }
    const prefixed = new HttpOryClient(`${ory.url}/kratos`, '/health/ready', 500);
    try {
      expect(await prefixed.healthCheck()).toMatchObject({
        status: 'unavailable',
        error: 'status 404',
      });
    } finally {
      prefixed.close();
    }
  });

  it('lets go of its keep-alive connection on close(): what follows opens a new one', async () => {
    const client = new HttpOryClient(ory.url, '/health/ready', 500);
    try {
      ory.resetCounts();
      await client.healthCheck();
      await client.healthCheck();
      expect(ory.connections).toBe(1);
      client.close();
      expect((await client.healthCheck()).status).toBe('ok');
      expect(ory.connections).toBe(2);
    } finally {
      client.close();
    }
  });

  it.each([500, 502, 204])('treats status %i as unavailable', async (status) => {
    ory.fault = { kind: 'status', status };
    const client = new HttpOryClient(ory.url, '/health/ready', 500);
    try {
      expect(await client.healthCheck()).toMatchObject({ error: `status ${status}` });
    } finally {
      client.close();
    }
  });
});
