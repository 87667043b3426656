import http from 'node:http';
import path from 'node:path';
import { exited, requireBuild, startCoffeebuddy, type RunningProcess } from '../../testing/process';
import { eventually } from '../../testing/tools';
import {
  startOryStandIn,
  startVaultStandIn,
  type OryStandIn,
  type VaultStandIn,
} from '../../testing/standins';
import { SYSTEM_TOLERANCE_MS } from './tolerance';

/** How the production entry ends: drained on SIGTERM and on faults, at once on a second signal. */

const FAULT_PRELOAD = path.join(__dirname, '..', 'support', 'fault.js');
const VAULT_DELAY_MS = 1000;
/** How long readiness waits on Vault in start(): what a drain that waits for a request takes. */
const READINESS_TIMEOUT_MS = 5000;

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/**
 * One GET, on a fresh connection unless an agent is given: `sent` settles once the request is
 * handed to the kernel, `answer` with the response.
 */
function send(
  port: number,
  urlPath: string,
  agent?: http.Agent,
): { sent: Promise<void>; answer: Promise<Answer> } {
  let sent!: () => void;
  const sentPromise = new Promise<void>((resolve) => (sent = resolve));
  const answer = new Promise<Answer>((resolve, reject) => {
    const req = http.get(
      { host: '127.0.0.1', port, path: urlPath, agent: agent ?? false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
        });
      },
    );
    req.on('finish', sent);
    req.on('error', reject);
    req.setTimeout(15_000, () => req.destroy(new Error('timeout')));
  });
  return { sent: sentPromise, answer };
}

const get = (port: number, urlPath: string, agent?: http.Agent): Promise<Answer> =>
  send(port, urlPath, agent).answer;

describe('the production entry’s lifecycle', () => {
  let vault: VaultStandIn;
  let ory: OryStandIn;
  let server: RunningProcess | undefined;

  beforeAll(async () => {
    requireBuild();
    vault = await startVaultStandIn();
    ory = await startOryStandIn();
  });
  afterEach(async () => {
    await server?.stop();
    server = undefined;
    vault.fault = { kind: 'none' };
  });
  afterAll(() => Promise.all([vault.close(), ory.close()]));

  /** The entry with readiness checks that take VAULT_DELAY_MS once Vault is made slow. */
  async function start(env: NodeJS.ProcessEnv = {}, nodeArgs: string[] = []) {
    server = await startCoffeebuddy(
      vault.url,
      ory.url,
      { READINESS_TIMEOUT_MS: String(READINESS_TIMEOUT_MS), READINESS_CACHE_TTL_MS: '0', ...env },
      nodeArgs,
    );
    return server;
  }

  /**
   * Starts `count` readiness requests that wait on a slow Vault, and waits until the server holds
   * them all: each is written to its socket, Vault is asked, and a request on a connection opened
   * after them has been answered (the server reads sockets in the order their bytes arrived).
   * With `delayMs` past READINESS_TIMEOUT_MS, each is answered only at that timeout.
   */
  async function inFlight(
    running: RunningProcess,
    count: number,
    delayMs = VAULT_DELAY_MS,
  ): Promise<Promise<Answer>[]> {
    vault.fault = { kind: 'slow', delayMs };
    const before = vault.requests;
    const requests = Array.from({ length: count }, () => send(running.port, '/health/ready'));
    await Promise.all(requests.map((r) => r.sent));
    await eventually(() => vault.requests > before);
    expect((await get(running.port, '/health/live')).status).toBe(200);
    return requests.map((r) => r.answer);
  }

  it('on SIGTERM answers all 20 requests in flight, refuses new connections, exits 0', async () => {
    const running = await start();
    const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1 });
    expect((await get(running.port, '/health/live', keepAlive)).status).toBe(200);
    const answers = await inFlight(running, 20);
    running.child.kill('SIGTERM');
    await eventually(() => running.logLines().some((l) => l.msg === 'drain started'));

    // Already-open keep-alive connections are still served, told to close, and not ready.
    const during = await get(running.port, '/health/ready', keepAlive);
    expect(during.status).toBe(503);
    expect(JSON.parse(during.body)).toEqual({ detail: { status: 'draining' } });
    expect(during.headers.connection).toBe('close');
    await expect(get(running.port, '/health/live')).rejects.toThrow(/ECONNREFUSED/);

    const statuses = (await Promise.all(answers)).map((a) => a.status);
    expect(statuses).toEqual(Array.from({ length: 20 }, () => 200));
    expect(await exited(running.child)).toBe(0);
    const started = running.logLines().find((l) => l.msg === 'drain started');
    const finished = running.logLines().find((l) => l.msg === 'drain finished');
    expect(started).toMatchObject({ reason: 'signal SIGTERM', requests: 20, work: 0 });
    expect(finished).toMatchObject({ drained: true, requestsAbandoned: 0, exitCode: 0 });
    keepAlive.destroy();
  });

  // Waiting for the request instead would take READINESS_TIMEOUT_MS, well past the tolerance.
  it('exits at once on a second signal', async () => {
    const running = await start();
    const answers = Promise.allSettled(await inFlight(running, 1, 2 * READINESS_TIMEOUT_MS));
    running.child.kill('SIGTERM');
    await eventually(() => running.logLines().some((l) => l.msg === 'drain started'));
    const signalled = performance.now();
    running.child.kill('SIGINT');
    expect(await exited(running.child)).toBe(130);
    expect(performance.now() - signalled).toBeLessThan(SYSTEM_TOLERANCE_MS);
    expect((await answers).map((a) => a.status)).toEqual(['rejected']);
  });

  it('gives up on what is still in flight after SHUTDOWN_TIMEOUT_MS, and exits 0', async () => {
    const running = await start({ SHUTDOWN_TIMEOUT_MS: '300' });
    const answers = Promise.allSettled(await inFlight(running, 2, 2 * READINESS_TIMEOUT_MS));
    const signalled = performance.now();
    running.child.kill('SIGTERM');
    expect(await exited(running.child)).toBe(0);
    expect(performance.now() - signalled).toBeLessThan(300 + SYSTEM_TOLERANCE_MS);
    expect(running.logLines().find((l) => l.msg === 'drain finished')).toMatchObject({
      drained: false,
      requestsAbandoned: 2,
    });
    expect((await answers).map((a) => a.status)).toEqual(['rejected', 'rejected']);
  });

  it.each(['unhandled_rejection', 'uncaught_exception'])(
    'a fault outside a request (%s) is logged and counted, then drains and exits 1',
    async (kind) => {
      const running = await start({ FAULT_KIND: kind }, ['-r', FAULT_PRELOAD]);
      const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1 });
      expect((await get(running.port, '/health/live', keepAlive)).status).toBe(200);
      const answers = await inFlight(running, 3);
      running.child.kill('SIGUSR2');
      await eventually(() => running.logLines().some((l) => l.msg === 'drain started'));
      const metrics = await get(running.port, '/metrics', keepAlive);
      expect(metrics.body).toContain(`coffeebuddy_process_faults_total{kind="${kind}"} 1`);
      expect((await Promise.all(answers)).map((a) => a.status)).toEqual([200, 200, 200]);
      expect(await exited(running.child)).toBe(1);
      const fault = running.logLines().filter((l) => l.msg === 'fault outside a request');
      expect(fault).toEqual([expect.objectContaining({ level: 'error', kind, error: 'Error' })]);
      expect(server!.output()).not.toContain('injected fault');
      keepAlive.destroy();
    },
  );
});
