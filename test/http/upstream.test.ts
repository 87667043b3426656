import { Upstream } from '../../lib/http/upstream';
import { absentUrl, startOryStandIn, type OryStandIn } from '../../testing/standins';

const okOn200 = (status: number) => (status === 200 ? undefined : `status ${status}`);

describe('Upstream.check network failures', () => {
  let ory: OryStandIn;
  const opened: Upstream[] = [];
  const upstream = (url: string, timeoutMs: number) => {
    const created = new Upstream(url, timeoutMs);
    opened.push(created);
    return created;
  };

  beforeAll(async () => {
    ory = await startOryStandIn();
  });
  beforeEach(() => {
    ory.fault = { kind: 'none' };
  });
  afterEach(() => {
    for (const u of opened.splice(0)) u.close();
  });
  afterAll(() => ory.close());

  it('names a refused connection', async () => {
    const health = await upstream(await absentUrl(), 500).check('/health/ready', okOn200);
    expect(health).toMatchObject({ status: 'unavailable', error: 'connection refused' });
  });

  // How soon it gives up is a deadline, held in test/system/deadlines.test.ts.
  it('times out a server that accepts and never answers, naming the timeout', async () => {
    ory.fault = { kind: 'hang' };
    const health = await upstream(ory.url, 200).check('/health/ready', okOn200);
    expect(health).toMatchObject({ status: 'unavailable', error: 'timeout after 200 ms' });
  });

  it('names a reset connection, after one more try', async () => {
    ory.fault = { kind: 'reset' };
    ory.resetCounts();
    const health = await upstream(ory.url, 500).check('/health/ready', okOn200);
    expect(health).toMatchObject({ status: 'unavailable', error: 'connection reset' });
    expect(ory.requests).toBe(2);
  });

  it('does not call a server down because it reset one pooled connection', async () => {
    const client = upstream(ory.url, 500);
    expect((await client.check('/health/ready', okOn200)).status).toBe('ok');
    ory.fault = { kind: 'resetOnce' };
    ory.resetCounts();
    expect((await client.check('/health/ready', okOn200)).status).toBe('ok');
    expect(ory.requests).toBe(2);
  });

  it('calls a server that went away refused, not reset', async () => {
    const client = upstream(ory.url, 500);
    expect((await client.check('/health/ready', okOn200)).status).toBe('ok');
    await ory.goAway();
    try {
      expect(await client.check('/health/ready', okOn200)).toMatchObject({
        error: 'connection refused',
      });
    } finally {
      await ory.comeBack();
    }
  });

  it('names an answer that is not HTTP', async () => {
    ory.fault = { kind: 'garbage' };
    const health = await upstream(ory.url, 500).check('/health/ready', okOn200);
    expect(health).toMatchObject({ status: 'unavailable', error: 'invalid HTTP response' });
  });

  it('accepts a slow answer inside the timeout and reports its latency', async () => {
    ory.fault = { kind: 'slow', delayMs: 120 };
    const health = await upstream(ory.url, 1000).check('/health/ready', okOn200);
    expect(health.status).toBe('ok');
    expect(health.latencyMs).toBeGreaterThanOrEqual(100);
  });

  it('times out a slow answer past the timeout', async () => {
    ory.fault = { kind: 'slow', delayMs: 400 };
    const health = await upstream(ory.url, 100).check('/health/ready', okOn200);
    expect(health).toMatchObject({ status: 'unavailable', error: 'timeout after 100 ms' });
  });

  it('names a host that DNS does not know', async () => {
    // .invalid is reserved (RFC 2606): it never resolves.
    const health = await upstream('http://vault.invalid:8200', 5000).check('/', okOn200);
    expect(health).toMatchObject({ error: 'DNS lookup failed for vault.invalid' });
  });

  it('recovers after the upstream comes back', async () => {
    const client = upstream(ory.url, 300);
    ory.fault = { kind: 'reset' };
    expect((await client.check('/health/ready', okOn200)).status).toBe('unavailable');
    ory.fault = { kind: 'none' };
    expect((await client.check('/health/ready', okOn200)).status).toBe('ok');
  });
});
