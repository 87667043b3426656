import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { signSlackRequest } from '../../lib/slack/signature';
import { metricValue } from '../../testing/metrics-text';
import {
  ENTRY,
  requireBuild,
  runToExit,
  startCoffeebuddy,
  type RunningProcess,
} from '../../testing/process';
import {
  startOryStandIn,
  startVaultStandIn,
  type OryStandIn,
  type VaultStandIn,
} from '../../testing/standins';

/** Slack ingress under forged traffic and a failing Vault, black-box against the production entry. */

const SECRET = 'hardening-secret';
const FORM = 'application/x-www-form-urlencoded';
const now = () => String(Math.floor(Date.now() / 1000));

function post(
  server: RunningProcess,
  urlPath: string,
  body: string,
  type: string,
  headers: Record<string, string> = {},
) {
  return fetch(`${server.url}${urlPath}`, {
    method: 'POST',
    headers: { 'Content-Type': type, ...headers },
    body,
  });
}

const signed = (body: string, secret = SECRET, timestamp = now()) => ({
  'X-Slack-Request-Timestamp': timestamp,
  'X-Slack-Signature': signSlackRequest(secret, timestamp, body),
});

const command = new URLSearchParams({ command: '/coffee', text: 'help' }).toString();

async function slackCount(server: RunningProcess, kind: string, outcome: string) {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  return metricValue(text, 'coffeebuddy_slack_requests_total', { kind, outcome });
}

/** Vault requests other than health checks: secret reads and logins. */
const vaultWork = (vault: VaultStandIn) =>
  vault.log.filter((r) => !r.path.startsWith('/v1/sys/health')).length;

describe('Slack ingress hardening', () => {
  let vault: VaultStandIn;
  let ory: OryStandIn;
  let server: RunningProcess | undefined;
  let dir: string;

  beforeAll(async () => {
    requireBuild();
    vault = await startVaultStandIn();
    ory = await startOryStandIn();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slack-hardening-'));
  });
  beforeEach(() => {
    vault.tokens.clear();
    vault.tokens.set('hvs.hardening', Date.now() + 600_000);
    vault.secrets['coffeebuddy/slack'] = { signing_secret: SECRET };
    vault.fault = { kind: 'none' };
    Object.assign(vault.kubernetes, { role: 'coffeebuddy', jwt: 'sa-jwt', leaseSeconds: 3600 });
  });
  afterEach(async () => {
    await server?.stop();
    server = undefined;
  });
  afterAll(async () => {
    await Promise.all([vault.close(), ory.close()]);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** The entry against the stand-ins; Vault's counts start once it answers, unless `fromStart`. */
  const start = async (env: NodeJS.ProcessEnv = {}, fromStart = false) => {
    if (fromStart) vault.resetCounts();
    server = await startCoffeebuddy(vault.url, ory.url, {
      VAULT_TOKEN: 'hvs.hardening',
      SLACK_SIGNING_SECRET_VAULT_PATH: 'coffeebuddy/slack',
      ...env,
    });
    if (!fromStart) vault.resetCounts();
    return server;
  };

  it('counts every known Slack label set from 0 on a fresh pod', async () => {
    const running = await start();
    for (const kind of ['commands', 'events', 'interactions']) {
      for (const outcome of ['ok', 'bad_signature', 'retry_duplicate', 'overloaded']) {
        expect([kind, outcome, await slackCount(running, kind, outcome)]).toEqual([
          kind,
          outcome,
          0,
        ]);
      }
    }
  });

  it('never reads the secret for 200 requests without a plausible signature', async () => {
    const running = await start();
    // Unsigned, half-signed, a malformed signature, a signature on a stale timestamp.
    const forged: Record<string, string>[] = [
      {},
      { 'X-Slack-Request-Timestamp': now() },
      { 'X-Slack-Request-Timestamp': now(), 'X-Slack-Signature': 'v0=abc' },
      signed(command, SECRET, '1'),
    ];
    for (let i = 0; i < 200; i += 1) {
      const res = await post(running, '/slack/commands', command, FORM, forged[i % 4]);
      expect(res.status).toBe(401);
    }
    expect(vaultWork(vault)).toBe(0);
  });

  it('with the KV read failing, 200 forged requests make at most 5 Vault requests', async () => {
    delete vault.secrets['coffeebuddy/slack'];
    const running = await start();
    const statuses = new Set<number>();
    for (let i = 0; i < 200; i += 1) {
      const res = await post(running, '/slack/commands', command, FORM, signed(command, 'forged'));
      statuses.add(res.status);
    }
    expect([...statuses]).toEqual([503]);
    expect(vaultWork(vault)).toBeGreaterThan(0);
    expect(vaultWork(vault)).toBeLessThanOrEqual(5);
  });

  it('with Kubernetes login failing, 100 forged requests make at most 5, logins included', async () => {
    const jwtFile = path.join(dir, 'token');
    fs.writeFileSync(jwtFile, 'not-the-jwt');
    // Counted from the start: a readiness check at start-up may make the first login before the
    // entry answers, and the requests after it then wait out its back-off.
    const running = await start(
      { VAULT_TOKEN: '', VAULT_K8S_ROLE: 'coffeebuddy', VAULT_K8S_JWT_FILE: jwtFile },
      true,
    );
    await Promise.all(
      Array.from({ length: 100 }, () =>
        post(running, '/slack/events', '{}', 'application/json', signed('{}', 'forged')),
      ),
    );
    expect(vault.kubernetes.logins).toBe(0);
    expect(vaultWork(vault)).toBeGreaterThan(0);
    expect(vaultWork(vault)).toBeLessThanOrEqual(5);
  });

  it('keeps verifying with the secret it had while Vault fails after the TTL', async () => {
    const running = await start({ SLACK_SECRET_TTL_MS: '1000' });
    expect((await post(running, '/slack/commands', command, FORM, signed(command))).status).toBe(
      200,
    );
    vault.fault = { kind: 'status', status: 500 };
    await new Promise((resolve) => setTimeout(resolve, 1200));
    expect((await post(running, '/slack/commands', command, FORM, signed(command))).status).toBe(
      200,
    );
    expect(
      (await post(running, '/slack/commands', command, FORM, signed(command, 'x'))).status,
    ).toBe(401);
  });

  it('reuses a Kubernetes-auth token with lease 0 instead of logging in per read', async () => {
    const jwtFile = path.join(dir, 'token');
    fs.writeFileSync(jwtFile, 'sa-jwt');
    vault.kubernetes.leaseSeconds = 0;
    const running = await start({
      VAULT_TOKEN: '',
      VAULT_K8S_ROLE: 'coffeebuddy',
      VAULT_K8S_JWT_FILE: jwtFile,
      SLACK_SECRET_TTL_MS: '1000',
    });
    const before = vault.kubernetes.logins;
    for (let i = 0; i < 3; i += 1) {
      expect((await post(running, '/slack/commands', command, FORM, signed(command))).status).toBe(
        200,
      );
      await new Promise((resolve) => setTimeout(resolve, 1100));
    }
    expect(vault.log.filter((r) => r.path.startsWith('/v1/secret/data/')).length).toBe(3);
    expect(vault.kubernetes.logins - before).toBe(1);
  });

  it('honours ssl_check only as a form on /slack/commands', async () => {
    const running = await start();
    expect((await post(running, '/slack/commands', 'ssl_check=1&token=x', FORM)).status).toBe(200);
    expect(
      (await post(running, '/slack/commands', '{"ssl_check":"1"}', 'application/json')).status,
    ).toBe(401);
    expect((await post(running, '/slack/events', 'ssl_check=1', FORM)).status).toBe(401);
    expect(await slackCount(running, 'commands', 'ssl_check')).toBe(1);
  });

  it('handles one event once: redeliveries without the retry header are duplicates too', async () => {
    const running = await start();
    const event = JSON.stringify({
      type: 'event_callback',
      event_id: 'EvOnce1',
      event: { type: 'app_mention', text: 'hi' },
    });
    for (let i = 0; i < 3; i += 1) {
      const res = await post(running, '/slack/events', event, 'application/json', signed(event));
      expect(res.status).toBe(200);
    }
    expect(await slackCount(running, 'events', 'ok')).toBe(1);
    expect(await slackCount(running, 'events', 'retry_duplicate')).toBe(2);
  });

  it('prints no credentials or query of a URL setting that fails to parse', async () => {
    for (const value of [
      'http://admin:PW-canary@vault.example:99999',
      'http://u:PW-canary@[::1',
      'http://vault.example/?token=PW-canary',
    ]) {
      const { code, stdout, stderr } = await runToExit([ENTRY], {
        NODE_ENV: 'production',
        VAULT_ADDR: value,
        ORY_URL: ory.url,
      });
      expect(code).toBe(78);
      expect(stderr).toContain('VAULT_ADDR');
      expect(stdout + stderr).not.toContain('PW-canary');
    }
  });
});
