import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Upstream } from '../../lib/http/upstream';
import { UpstreamError } from '../../lib/errors';
import {
  buildVaultClient,
  HttpVaultClient,
  reportingSecrets,
  vaultSecretValue,
} from '../../lib/clients/vault';
import { FileToken, KubernetesLogin, StaticToken } from '../../lib/clients/vault-auth';
import { loadSettings } from '../../lib/config/settings';
import { REDACTED, Redactor } from '../../lib/redactor';
import { UPSTREAM_CANARY, startVaultStandIn, type VaultStandIn } from '../../testing/standins';

const SECRET = { signing_secret: 'slack-signing-secret-value' };

describe('reading KV v2 secrets from Vault', () => {
  let vault: VaultStandIn;
  let dir: string;
  const opened: { close?(): void }[] = [];
  const track = <T extends { close?(): void }>(client: T): T => {
    opened.push(client);
    return client;
  };

  beforeAll(async () => {
    vault = await startVaultStandIn();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vault-tokens-'));
  });
  beforeEach(() => {
    vault.tokens.clear();
    vault.secrets['coffeebuddy/slack'] = { ...SECRET };
    Object.assign(vault.kubernetes, {
      role: 'coffeebuddy',
      jwt: 'service-account-jwt',
      leaseSeconds: 3600,
      logins: 0,
    });
  });
  afterEach(() => {
    vault.fault = { kind: 'none' };
    for (const client of opened.splice(0)) client.close?.();
  });
  afterAll(async () => {
    await vault.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('reads a secret with VAULT_TOKEN', async () => {
    vault.tokens.set('hvs.env-token', Date.now() + 60_000);
    const client = track(
      new HttpVaultClient(vault.url, 1000, { tokens: () => new StaticToken('hvs.env-token') }),
    );
    expect(await client.readSecret('coffeebuddy/slack')).toEqual(SECRET);
  });

  it('names a missing secret, a refused token and a client without a token', async () => {
    vault.tokens.set('hvs.env-token', Date.now() + 60_000);
    const client = track(
      new HttpVaultClient(vault.url, 1000, { tokens: () => new StaticToken('hvs.env-token') }),
    );
    await expect(client.readSecret('coffeebuddy/none')).rejects.toThrow(
      'no secret at secret/coffeebuddy/none',
    );
    const refused = track(
      new HttpVaultClient(vault.url, 1000, { tokens: () => new StaticToken('hvs.revoked') }),
    );
    await expect(refused.readSecret('coffeebuddy/slack')).rejects.toThrow(
      'permission denied reading secret/coffeebuddy/slack',
    );
    const tokenless = track(new HttpVaultClient(vault.url, 1000));
    await expect(tokenless.readSecret('coffeebuddy/slack')).rejects.toThrow(
      'no Vault token is configured',
    );
  });

  it('names a status Vault answers a read with other than 200, 403 or 404 (sealed: 503)', async () => {
    vault.tokens.set('hvs.env-token', Date.now() + 60_000);
    const client = track(
      new HttpVaultClient(vault.url, 1000, { tokens: () => new StaticToken('hvs.env-token') }),
    );
    vault.fault = { kind: 'status', status: 503 };
    const error = await client.readSecret('coffeebuddy/slack').catch((e: unknown) => e);
    expect((error as Error).message).toBe('unexpected status 503 reading secret/coffeebuddy/slack');
    expect((error as Error).message).not.toContain(UPSTREAM_CANARY);
  });

  it.each([
    ['a KV version 1 answer (no data.data)', '{"data":{"signing_secret":"value"}}'],
    ['data.data null', '{"data":{"data":null,"metadata":{"version":1}}}'],
    ['data.data not an object', '{"data":{"data":"value"}}'],
    ['text that is not JSON', 'not json'],
  ])('calls a 200 with %s an unreadable secret, without the body', async (_what, text) => {
    vault.tokens.set('hvs.env-token', Date.now() + 60_000);
    const client = track(
      new HttpVaultClient(vault.url, 1000, { tokens: () => new StaticToken('hvs.env-token') }),
    );
    vault.fault = { kind: 'answer', status: 200, text };
    const error = await client.readSecret('coffeebuddy/slack').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UpstreamError);
    expect((error as Error).message).toBe('unreadable secret at secret/coffeebuddy/slack');
  });

  it('reads one non-empty text value of a secret, naming a missing or empty key', async () => {
    vault.tokens.set('hvs.env-token', Date.now() + 60_000);
    vault.secrets['coffeebuddy/postgres'] = { password: 'pg-password', empty: '' };
    const client = track(
      new HttpVaultClient(vault.url, 1000, { tokens: () => new StaticToken('hvs.env-token') }),
    );
    const value = (key: string) =>
      vaultSecretValue(client, { mount: 'secret', path: 'coffeebuddy/postgres', key })();
    expect(await value('password')).toBe('pg-password');
    await expect(value('empty')).rejects.toThrow('no "empty" in secret/coffeebuddy/postgres');
    await expect(value('absent')).rejects.toThrow('no "absent" in secret/coffeebuddy/postgres');
  });

  it('reports every text value it reads to the redactor, and closes the client it wraps', async () => {
    vault.tokens.set('hvs.env-token', Date.now() + 60_000);
    vault.resetCounts();
    const redactor = new Redactor();
    const client = track(
      new HttpVaultClient(vault.url, 1000, { tokens: () => new StaticToken('hvs.env-token') }),
    );
    const reporting = reportingSecrets(client, redactor);
    expect(await reporting.readSecret('coffeebuddy/slack')).toEqual(SECRET);
    expect(redactor.redact(`x ${SECRET.signing_secret} y`)).toBe(`x ${REDACTED} y`);
    expect((await reporting.healthCheck()).status).toBe('ok');
    expect(vault.connections).toBe(1);
    reporting.close?.();
    // Its keep-alive connection is gone: the next request opens another.
    expect((await reporting.healthCheck()).status).toBe('ok');
    expect(vault.connections).toBe(2);
  });

  it('reads the token from VAULT_TOKEN_FILE again when Vault refuses it (Agent rewrote it)', async () => {
    const file = path.join(dir, 'token');
    fs.writeFileSync(file, 'hvs.first\n');
    vault.tokens.set('hvs.first', Date.now() + 60_000);
    const client = track(
      new HttpVaultClient(vault.url, 1000, { tokens: () => new FileToken(file, 60_000) }),
    );
    expect(await client.readSecret('coffeebuddy/slack')).toEqual(SECRET);
    vault.tokens.delete('hvs.first');
    vault.tokens.set('hvs.second', Date.now() + 60_000);
    fs.writeFileSync(file, 'hvs.second\n');
    expect(await client.readSecret('coffeebuddy/slack')).toEqual(SECRET);
  });

  it('reads VAULT_TOKEN_FILE again after its re-read interval', async () => {
    const file = path.join(dir, 'token-interval');
    fs.writeFileSync(file, 'one');
    const clock = { now: 0 };
    const tokens = new FileToken(file, 1000, () => clock.now);
    expect(await tokens.token()).toBe('one');
    fs.writeFileSync(file, 'two');
    expect(await tokens.token()).toBe('one');
    clock.now = 1000;
    expect(await tokens.token()).toBe('two');
  });

  it('keeps a token file read until rereadMs after the read, on any clock', async () => {
    const file = path.join(dir, 'token-clock');
    fs.writeFileSync(file, 'one');
    const clock = { now: 50_000 };
    const tokens = new FileToken(file, 1000, () => clock.now);
    expect(await tokens.token()).toBe('one');
    fs.writeFileSync(file, 'two');
    clock.now = 50_999;
    expect(await tokens.token()).toBe('one');
    clock.now = 51_000;
    expect(await tokens.token()).toBe('two');
  });

  it('names an unreadable or empty token file without its content', async () => {
    await expect(new FileToken(path.join(dir, 'absent'), 1000).token()).rejects.toThrow(
      `cannot read VAULT_TOKEN_FILE ${path.join(dir, 'absent')} (ENOENT)`,
    );
    fs.writeFileSync(path.join(dir, 'empty'), '\n');
    await expect(new FileToken(path.join(dir, 'empty'), 1000).token()).rejects.toThrow('is empty');
  });

  describe('Kubernetes auth', () => {
    const jwtFile = () => {
      const file = path.join(dir, 'sa-token');
      fs.writeFileSync(file, vault.kubernetes.jwt);
      return file;
    };
    /** Kubernetes auth as role coffeebuddy with the stand-in's JWT; `now` is injectable. */
    const kubernetesLogin = (upstream: Upstream, now?: () => number) =>
      new KubernetesLogin(
        upstream,
        {
          mount: 'kubernetes',
          role: 'coffeebuddy',
          jwtFile: jwtFile(),
          timeoutMs: 1000,
          noLeaseReuseMs: 60_000,
        },
        now,
      );
    const kubernetesClient = () =>
      track(
        new HttpVaultClient(vault.url, 1000, { tokens: (upstream) => kubernetesLogin(upstream) }),
      );

    it('logs in with the service-account JWT and reuses the token', async () => {
      const client = kubernetesClient();
      for (let i = 0; i < 3; i += 1)
        expect(await client.readSecret('coffeebuddy/slack')).toEqual(SECRET);
      expect(vault.kubernetes.logins).toBe(1);
    });

    it('logs in again after a 403 (token revoked)', async () => {
      const client = kubernetesClient();
      await client.readSecret('coffeebuddy/slack');
      vault.tokens.clear();
      expect(await client.readSecret('coffeebuddy/slack')).toEqual(SECRET);
      expect(vault.kubernetes.logins).toBe(2);
    });

    it('logs in again at two thirds of the lease, and once for concurrent callers', async () => {
      const upstream = track(new Upstream(vault.url, 1000));
      const clock = { now: 0 };
      vault.kubernetes.leaseSeconds = 30;
      const tokens = kubernetesLogin(upstream, () => clock.now);
      const [a, b] = await Promise.all([tokens.token(), tokens.token()]);
      expect(a).toBe(b);
      expect(vault.kubernetes.logins).toBe(1);
      clock.now = 19_999;
      expect(await tokens.token()).toBe(a);
      clock.now = 20_000;
      expect(await tokens.token()).not.toBe(a);
      expect(vault.kubernetes.logins).toBe(2);
    });

    it('reuses a token with lease 0 for noLeaseReuseMs, not one login per read', async () => {
      const upstream = track(new Upstream(vault.url, 1000));
      const clock = { now: 0 };
      vault.kubernetes.leaseSeconds = 0;
      const tokens = kubernetesLogin(upstream, () => clock.now);
      const first = await tokens.token();
      clock.now = 59_999;
      expect(await tokens.token()).toBe(first);
      expect(vault.kubernetes.logins).toBe(1);
      clock.now = 60_000;
      await tokens.token();
      expect(vault.kubernetes.logins).toBe(2);
    });

    it('names a service-account token file it cannot read', async () => {
      const upstream = track(new Upstream(vault.url, 1000));
      const missing = path.join(dir, 'no-sa-token');
      const tokens = new KubernetesLogin(upstream, {
        mount: 'kubernetes',
        role: 'coffeebuddy',
        jwtFile: missing,
        timeoutMs: 1000,
        noLeaseReuseMs: 60_000,
      });
      await expect(tokens.token()).rejects.toThrow(
        `cannot read VAULT_K8S_JWT_FILE ${missing} (ENOENT)`,
      );
      expect(vault.kubernetes.logins).toBe(0);
    });

    it.each([
      ['not JSON', 'not json', 'Kubernetes login to Vault gave an unreadable answer'],
      ['no auth', '{"data":null}', 'Kubernetes login to Vault gave no token'],
      [
        'an empty client_token',
        '{"auth":{"client_token":"","lease_duration":3600}}',
        'Kubernetes login to Vault gave no token',
      ],
      [
        'no lease_duration',
        '{"auth":{"client_token":"hvs.x"}}',
        'Kubernetes login to Vault gave no token',
      ],
    ])('refuses a login answered 200 with %s', async (_what, text, message) => {
      const upstream = track(new Upstream(vault.url, 1000));
      vault.fault = { kind: 'answer', status: 200, text };
      await expect(kubernetesLogin(upstream).token()).rejects.toThrow(message);
    });

    it('names a refused login without echoing the JWT or Vault’s answer', async () => {
      const upstream = track(new Upstream(vault.url, 1000));
      vault.kubernetes.role = 'other-role';
      const tokens = kubernetesLogin(upstream);
      const error = await tokens.token().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UpstreamError);
      expect((error as Error).message).toBe('Kubernetes login to Vault failed (status 403)');
      expect((error as Error).message).not.toContain(UPSTREAM_CANARY);
    });
  });

  it('builds the token source the settings name', async () => {
    vault.tokens.set('hvs.from-settings', Date.now() + 60_000);
    const client = buildVaultClient(
      loadSettings({
        VAULT_ADDR: vault.url,
        VAULT_TOKEN: 'hvs.from-settings',
        SLACK_SIGNING_SECRET_VAULT_PATH: 'coffeebuddy/slack',
      }),
    );
    try {
      expect(await client.readSecret('coffeebuddy/slack')).toEqual(SECRET);
    } finally {
      client.close?.();
    }
  });

  it('builds a VAULT_TOKEN_FILE source that reads the file again on a 403, each token redacted', async () => {
    const file = path.join(dir, 'agent-token');
    fs.writeFileSync(file, 'hvs.agent-first-token\n');
    vault.tokens.set('hvs.agent-first-token', Date.now() + 60_000);
    const redactor = new Redactor();
    const client = track(
      buildVaultClient(loadSettings({ VAULT_ADDR: vault.url, VAULT_TOKEN_FILE: file }), {
        redactor,
      }),
    );
    expect(await client.readSecret('coffeebuddy/slack')).toEqual(SECRET);
    vault.tokens.clear();
    vault.tokens.set('hvs.agent-second-token', Date.now() + 60_000);
    fs.writeFileSync(file, 'hvs.agent-second-token\n');
    expect(await client.readSecret('coffeebuddy/slack')).toEqual(SECRET);
    expect(redactor.redact('hvs.agent-first-token hvs.agent-second-token')).toBe(
      `${REDACTED} ${REDACTED}`,
    );
  });

  it('builds a Kubernetes login from VAULT_K8S_ROLE and VAULT_K8S_JWT_FILE', async () => {
    const jwtFile = path.join(dir, 'sa-token-settings');
    fs.writeFileSync(jwtFile, vault.kubernetes.jwt);
    const client = track(
      buildVaultClient(
        loadSettings({
          VAULT_ADDR: vault.url,
          VAULT_K8S_ROLE: 'coffeebuddy',
          VAULT_K8S_JWT_FILE: jwtFile,
        }),
      ),
    );
    expect(await client.readSecret('coffeebuddy/slack')).toEqual(SECRET);
    expect(vault.kubernetes.logins).toBe(1);
  });

  it('builds a client that reads no secret when the settings name no token source', async () => {
    vault.resetCounts();
    const client = track(buildVaultClient(loadSettings({ VAULT_ADDR: vault.url })));
    await expect(client.readSecret('coffeebuddy/slack')).rejects.toThrow(
      'no Vault token is configured',
    );
    expect(vault.requests).toBe(0);
  });

  it('times secret reads by VAULT_REQUEST_TIMEOUT_MS and health checks by READINESS_TIMEOUT_MS', async () => {
    vault.tokens.set('hvs.from-settings', Date.now() + 60_000);
    const client = buildVaultClient(
      loadSettings({
        VAULT_ADDR: vault.url,
        VAULT_TOKEN: 'hvs.from-settings',
        READINESS_TIMEOUT_MS: '50',
        VAULT_REQUEST_TIMEOUT_MS: '300',
      }),
    );
    vault.fault = { kind: 'hang' };
    try {
      expect(await client.healthCheck()).toMatchObject({ error: 'timeout after 50 ms' });
      await expect(client.readSecret('coffeebuddy/slack')).rejects.toThrow('timeout after 300 ms');
    } finally {
      vault.fault = { kind: 'none' };
      client.close?.();
    }
  });
});
