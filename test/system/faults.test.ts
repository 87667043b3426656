import { SYSTEM_TOLERANCE_MS } from './tolerance';
import { requireBuild, startCoffeebuddy, type RunningProcess } from '../../testing/process';
import {
  VAULT_STATES,
  startOryStandIn,
  startVaultStandIn,
  type Fault,
  type OryStandIn,
  type StandIn,
  type VaultStandIn,
  type VaultState,
} from '../../testing/standins';

/**
 * The production server against Vault and Ory stand-ins in every state they document and every
 * way a network fails, alone and combined.
 */

// Generous for a loaded two-core machine: a healthy stand-in must answer well within it.
const TIMEOUT_MS = 1000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Mode {
  name: string;
  /** Puts the stand-in into this mode. */
  apply: (standIn: StandIn) => Promise<void>;
  expected: { status: 'ok' | 'unavailable'; error?: string };
  /** Leaves a check running until the timeout aborts it. */
  slow?: boolean;
}

const fault = (f: Fault) => (standIn: StandIn) => {
  standIn.fault = f;
  return Promise.resolve();
};
const down = (error: string) => ({ status: 'unavailable' as const, error });

const networkModes: Mode[] = [
  {
    name: 'hang',
    apply: fault({ kind: 'hang' }),
    expected: down(`timeout after ${TIMEOUT_MS} ms`),
    slow: true,
  },
  { name: 'reset', apply: fault({ kind: 'reset' }), expected: down('connection reset') },
  {
    name: 'slow but in time',
    apply: fault({ kind: 'slow', delayMs: 60 }),
    expected: { status: 'ok' },
  },
  {
    name: 'slow past the timeout',
    apply: fault({ kind: 'slow', delayMs: TIMEOUT_MS * 3 }),
    expected: down(`timeout after ${TIMEOUT_MS} ms`),
    slow: true,
  },
  { name: 'garbage', apply: fault({ kind: 'garbage' }), expected: down('invalid HTTP response') },
  { name: 'absent', apply: (s) => s.goAway(), expected: down('connection refused') },
];

const VAULT_EXPECTED: Record<VaultState, Mode['expected']> = {
  active: { status: 'ok' },
  standby: { status: 'ok' },
  'performance-standby': { status: 'ok' },
  'dr-secondary': down('disaster-recovery secondary'),
  'standby-unreachable': down('standby cannot reach the active node'),
  uninitialized: down('not initialized'),
  sealed: down('sealed'),
  removed: down('removed from the cluster'),
};

describe('faults', () => {
  let vault: VaultStandIn;
  let ory: OryStandIn;

  const vaultModes: Mode[] = [
    ...VAULT_STATES.map((state): Mode => ({
      name: state,
      apply: () => {
        vault.state = state;
        return Promise.resolve();
      },
      expected: VAULT_EXPECTED[state],
    })),
    ...networkModes,
  ];
  const oryModes: Mode[] = [
    { name: 'ready', apply: () => Promise.resolve(), expected: { status: 'ok' } },
    {
      name: 'not ready (503)',
      apply: () => {
        ory.ready = false;
        return Promise.resolve();
      },
      expected: down('status 503'),
    },
    ...networkModes,
  ];

  async function reset(): Promise<void> {
    for (const standIn of [vault, ory]) {
      standIn.fault = { kind: 'none' };
      if (!(await isListening(standIn))) await standIn.comeBack();
    }
    vault.state = 'active';
    ory.ready = true;
  }

  async function isListening(standIn: StandIn): Promise<boolean> {
    try {
      await fetch(`${standIn.url}/`, { signal: AbortSignal.timeout(500) });
      return true;
    } catch {
      return false;
    }
  }

  async function probe(server: RunningProcess, path: string) {
    const started = performance.now();
    const res = await fetch(`${server.url}${path}`, { signal: AbortSignal.timeout(5000) });
    const body = (await res.json()) as Record<string, any>;
    return { status: res.status, body, ms: performance.now() - started };
  }

  beforeAll(async () => {
    requireBuild();
    vault = await startVaultStandIn();
    ory = await startOryStandIn();
  });
  afterAll(() => Promise.all([vault.close(), ory.close()]));

  describe('every combination of Vault and Ory modes', () => {
    let server: RunningProcess;

    beforeAll(async () => {
      server = await startCoffeebuddy(vault.url, ory.url, {
        READINESS_TIMEOUT_MS: String(TIMEOUT_MS),
        READINESS_CACHE_TTL_MS: '0',
      });
    });
    afterAll(() => server.stop());

    const combinations = vaultModes.flatMap((v) =>
      oryModes.map((o): [string, string] => [v.name, o.name]),
    );

    it.each(combinations)('Vault %s, Ory %s', async (vaultName, oryName) => {
      const v = vaultModes.find((m) => m.name === vaultName)!;
      const o = oryModes.find((m) => m.name === oryName)!;
      await reset();
      await v.apply(vault);
      await o.apply(ory);

      const ready = await probe(server, '/health/ready');
      const live = await probe(server, '/health/live');

      const bothOk = v.expected.status === 'ok' && o.expected.status === 'ok';
      expect(ready.status).toBe(bothOk ? 200 : 503);
      const components = bothOk ? ready.body.components : ready.body.detail.components;
      expect(bothOk ? ready.body.status : ready.body.detail.status).toBe(
        bothOk ? 'ready' : 'degraded',
      );
      expect(components.vault).toMatchObject(v.expected);
      expect(components.ory).toMatchObject(o.expected);
      if (v.expected.error === undefined) expect(components.vault.error).toBeUndefined();
      if (o.expected.error === undefined) expect(components.ory.error).toBeUndefined();
      expect(ready.ms).toBeLessThan(TIMEOUT_MS + SYSTEM_TOLERANCE_MS);
      expect(live).toMatchObject({ status: 200, body: { status: 'live' } });
      expect(server.child.exitCode).toBeNull();
      // A check the timeout is still aborting would be joined by the next combination's probe.
      if (v.slow === true || o.slow === true) await sleep(TIMEOUT_MS + 50);
    });
  });

  describe('changes of state', () => {
    const TTL_MS = 200;
    let server: RunningProcess;

    beforeAll(async () => {
      await reset();
      server = await startCoffeebuddy(vault.url, ory.url, {
        READINESS_TIMEOUT_MS: String(TIMEOUT_MS),
        READINESS_CACHE_TTL_MS: String(TTL_MS),
      });
    });
    beforeEach(() => reset());
    afterAll(() => server.stop());

    it('follows a flapping Ory within TTL + timeout', async () => {
      const window = TTL_MS + TIMEOUT_MS + SYSTEM_TOLERANCE_MS;
      // Flips slower than the window, so that a stale answer is caught, not excused.
      const FLIP_MS = window + 800;
      const RUN_MS = 3 * FLIP_MS;
      const changes: { at: number; ready: boolean }[] = [{ at: performance.now(), ready: true }];
      const flipper = setInterval(() => {
        ory.ready = !ory.ready;
        changes.push({ at: performance.now(), ready: ory.ready });
      }, FLIP_MS);
      ory.resetCounts();
      const observed: { at: number; ready: boolean }[] = [];
      const started = performance.now();
      try {
        while (performance.now() - started < RUN_MS) {
          const { status } = await probe(server, '/health/ready');
          observed.push({ at: performance.now(), ready: status === 200 });
          expect((await probe(server, '/health/live')).status).toBe(200);
          await sleep(25);
        }
      } finally {
        clearInterval(flipper);
      }
      const stateAt = (t: number) => [...changes].reverse().find((c) => c.at <= t)?.ready ?? true;
      for (const { at, ready } of observed) {
        // What readiness said must have been true of Ory at some moment in the last TTL + timeout.
        const states = [
          stateAt(at - window),
          ...changes.filter((c) => c.at > at - window && c.at <= at).map((c) => c.ready),
        ];
        expect(states).toContain(ready);
      }
      expect(observed.some((o) => o.ready)).toBe(true);
      expect(observed.some((o) => !o.ready)).toBe(true);
      // Flapping does not turn probes into load: about one check per TTL.
      expect(ory.requests).toBeLessThanOrEqual(Math.ceil(RUN_MS / TTL_MS) + 2);
      expect(server.child.exitCode).toBeNull();
    }, 60_000);

    it('shows a recovering Vault within TTL + timeout', async () => {
      vault.state = 'sealed';
      const deadline = performance.now() + 5000;
      while ((await probe(server, '/health/ready')).status !== 503) {
        expect(performance.now()).toBeLessThan(deadline);
        await sleep(20);
      }
      vault.state = 'active';
      const recoveredAt = performance.now();
      while ((await probe(server, '/health/ready')).status !== 200) {
        expect(performance.now() - recoveredAt).toBeLessThan(
          TTL_MS + TIMEOUT_MS + SYSTEM_TOLERANCE_MS,
        );
        await sleep(10);
      }
      expect(performance.now() - recoveredAt).toBeLessThan(
        TTL_MS + TIMEOUT_MS + SYSTEM_TOLERANCE_MS,
      );
    });

    it('shows an Ory that comes back after being absent', async () => {
      await ory.goAway();
      const deadline = performance.now() + 5000;
      let res = await probe(server, '/health/ready');
      while (res.status !== 503) {
        expect(performance.now()).toBeLessThan(deadline);
        await sleep(20);
        res = await probe(server, '/health/ready');
      }
      expect(res.body.detail.components.ory.error).toBe('connection refused');
      await ory.comeBack();
      const back = performance.now();
      while ((await probe(server, '/health/ready')).status !== 200) {
        expect(performance.now() - back).toBeLessThan(TTL_MS + TIMEOUT_MS + SYSTEM_TOLERANCE_MS);
        await sleep(10);
      }
    });
  });
});
