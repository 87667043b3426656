import { signSlackRequest } from '../../lib/slack/signature';
import { requireBuild, startCoffeebuddy, type RunningProcess } from '../../testing/process';
import {
  startOryStandIn,
  startVaultStandIn,
  type OryStandIn,
  type VaultStandIn,
} from '../../testing/standins';
import { eventually } from '../../testing/tools';

/** Request ids and trace ids through the production entry's answers, logs and Vault requests. */

const SECRET = 'request-context-secret';
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const TRACEPARENT = `00-${TRACE_ID}-00f067aa0ba902b7-01`;
const BODY_CANARY = 'body-canary-8e1d';
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function slashCommand(url: string, headers: Record<string, string>, sign = true) {
  const body = new URLSearchParams({
    command: '/coffee',
    text: `help ${BODY_CANARY}`,
    user_id: 'U1',
  }).toString();
  const timestamp = String(Math.floor(Date.now() / 1000));
  return fetch(`${url}/slack/commands`, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/x-www-form-urlencoded',
      ...(sign
        ? {
            'X-Slack-Request-Timestamp': timestamp,
            'X-Slack-Signature': signSlackRequest(SECRET, timestamp, body),
          }
        : {}),
      ...headers,
    },
    body,
  });
}

describe('request context through the production entry', () => {
  let vault: VaultStandIn;
  let ory: OryStandIn;
  let server: RunningProcess;

  beforeAll(async () => {
    requireBuild();
    vault = await startVaultStandIn();
    ory = await startOryStandIn();
    vault.tokens.set('hvs.context', Date.now() + 600_000);
    vault.secrets['coffeebuddy/slack'] = { signing_secret: SECRET };
    server = await startCoffeebuddy(vault.url, ory.url, {
      VAULT_TOKEN: 'hvs.context',
      SLACK_SIGNING_SECRET_VAULT_PATH: 'coffeebuddy/slack',
    });
  });
  afterAll(async () => {
    await server.stop();
    await Promise.all([vault.close(), ory.close()]);
  });

  it('echoes the id, logs it with the trace id, route, status and duration, and sends it to Vault', async () => {
    vault.resetCounts();
    const res = await slashCommand(server.url, {
      'X-Request-ID': 'kong-id-1234',
      traceparent: TRACEPARENT,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-request-id')).toBe('kong-id-1234');
    await eventually(() => server.logLines().some((l) => l.requestId === 'kong-id-1234'));
    const access = server
      .logLines()
      .filter((l) => l.msg === 'request' && l.requestId === 'kong-id-1234');
    expect(access).toEqual([
      expect.objectContaining({
        level: 'info',
        method: 'POST',
        route: '/slack/commands',
        status: 200,
        durationMs: expect.any(Number),
        requestId: 'kong-id-1234',
        traceId: TRACE_ID,
      }),
    ]);
    // The secret read this request caused carried its id, for Vault's audit log.
    expect(vault.log.filter((r) => r.path.startsWith('/v1/secret/data/'))).toEqual([
      expect.objectContaining({ method: 'GET', requestId: 'kong-id-1234' }),
    ]);
  });

  it('logs a refused request with its id and 401', async () => {
    const res = await slashCommand(server.url, { 'X-Request-ID': 'unsigned-id-5678' }, false);
    expect(res.status).toBe(401);
    expect(res.headers.get('x-request-id')).toBe('unsigned-id-5678');
    await eventually(() => server.logLines().some((l) => l.msg === 'request' && l.status === 401));
    const mine = server.logLines().filter((l) => l.requestId === 'unsigned-id-5678');
    expect(mine.map((l) => l.msg).sort()).toEqual(['request', 'slack request refused']);
    expect(mine.find((l) => l.msg === 'request')).toMatchObject({ status: 401 });
  });

  it('gives a request without an id a UUID, in the answer and the logs', async () => {
    const res = await slashCommand(server.url, {});
    const id = res.headers.get('x-request-id');
    expect(id).toMatch(UUID_V4);
    await eventually(() =>
      server.logLines().some((l) => l.msg === 'request' && l.requestId === id),
    );
  });

  it('writes no access line for 60 probes and a scrape, and never a body', async () => {
    const before = server.logLines().length;
    for (let i = 0; i < 30; i += 1) {
      expect((await fetch(`${server.url}/health/live`)).status).toBe(200);
      await fetch(`${server.url}/health/ready`);
    }
    expect((await fetch(`${server.url}/metrics`)).status).toBe(200);
    const after = server.logLines().slice(before);
    expect(after.filter((l) => l.msg === 'request')).toEqual([]);
    expect(server.output()).not.toContain(BODY_CANARY);
  });
});
