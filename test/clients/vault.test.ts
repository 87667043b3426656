import { HttpVaultClient, buildVaultClient } from '../../lib/clients/vault';
import { loadSettings } from '../../lib/config/settings';
import {
  UPSTREAM_CANARY,
  VAULT_STATES,
  startVaultStandIn,
  type VaultStandIn,
  type VaultState,
} from '../../testing/standins';

const EXPECTED: Record<VaultState, string | undefined> = {
  active: undefined,
  standby: undefined,
  'performance-standby': undefined,
  'dr-secondary': 'disaster-recovery secondary',
  'standby-unreachable': 'standby cannot reach the active node',
  uninitialized: 'not initialized',
  sealed: 'sealed',
  removed: 'removed from the cluster',
};

describe('HttpVaultClient', () => {
  let vault: VaultStandIn;
  let client: HttpVaultClient;

  beforeAll(async () => {
    vault = await startVaultStandIn();
  });
  beforeEach(() => {
    vault.state = 'active';
    vault.fault = { kind: 'none' };
    vault.resetCounts();
    client = new HttpVaultClient(vault.url, 500);
  });
  afterEach(() => {
    client.close();
  });
  afterAll(() => vault.close());

  it.each(VAULT_STATES)('reports the %s state as Vault documents it', async (state) => {
    vault.state = state;
    const health = await client.healthCheck();
    const expected = EXPECTED[state];
    expect(health.status).toBe(expected === undefined ? 'ok' : 'unavailable');
    expect(health.error).toBe(expected);
    expect(Number.isNaN(Date.parse(health.checkedAt))).toBe(false);
    expect(Number.isInteger(health.latencyMs)).toBe(true);
  });

  it('measures the latency of the check in whole milliseconds, the stand-in delay included', async () => {
    vault.fault = { kind: 'slow', delayMs: 150 };
    const health = await client.healthCheck();
    expect(health.status).toBe('ok');
    expect(Number.isInteger(health.latencyMs)).toBe(true);
    // A timer may fire up to a millisecond before its delay by the wall clock.
    expect(health.latencyMs).toBeGreaterThanOrEqual(149);
  });

  it.each([418, 500, 404, 302])('names an undocumented status %i', async (status) => {
    vault.fault = { kind: 'status', status };
    const health = await client.healthCheck();
    expect(health).toMatchObject({ status: 'unavailable', error: `unexpected status ${status}` });
  });

  it('never copies the upstream body or headers into a reason', async () => {
    for (const state of VAULT_STATES) {
      vault.state = state;
      expect(JSON.stringify(await client.healthCheck())).not.toContain(UPSTREAM_CANARY);
    }
    vault.fault = { kind: 'garbage' };
    expect(JSON.stringify(await client.healthCheck())).not.toContain(UPSTREAM_CANARY);
  });

  it('reuses one keep-alive connection across checks', async () => {
    for (let i = 0; i < 5; i += 1) await client.healthCheck();
    expect(vault.requests).toBe(5);
    expect(vault.connections).toBe(1);
  });

  it('lets go of its keep-alive connection on close(): what follows opens a new one', async () => {
    await client.healthCheck();
    client.close();
    expect((await client.healthCheck()).status).toBe('ok');
    expect(vault.connections).toBe(2);
  });

  it('is built from the settings', async () => {
    const built = buildVaultClient(
      loadSettings({ VAULT_ADDR: `${vault.url}/`, READINESS_TIMEOUT_MS: '300' }),
    );
    try {
      await expect(built.healthCheck()).resolves.toMatchObject({ status: 'ok' });
    } finally {
      built.close?.();
    }
  });
});
