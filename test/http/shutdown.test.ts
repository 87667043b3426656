import http from 'node:http';
import { Lifecycle } from '../../lib/lifecycle';
import { createLogger } from '../../lib/logger';
import { Connections } from '../../lib/http/connections';
import { Shutdown } from '../../lib/http/shutdown';
import { eventually } from '../../testing/tools';

const servers: http.Server[] = [];
afterEach(() => {
  for (const server of servers.splice(0)) server.close();
});

/** A Shutdown over a real server on loopback, with exit() recorded instead of ending jest. */
async function harness(timeoutMs = 60_000) {
  const lifecycle = new Lifecycle();
  const logs: Record<string, unknown>[] = [];
  const exits: number[] = [];
  const faults: string[] = [];
  const server = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  const connections = new Connections(lifecycle);
  connections.attach(server);
  const released: number[] = [];
  const shutdown = new Shutdown({
    server,
    connections,
    lifecycle,
    release: () => {
      released.push(exits.length);
    },
    logger: createLogger('debug', (line) => logs.push(JSON.parse(line) as Record<string, unknown>)),
    timeoutMs,
    observeFault: (kind) => faults.push(kind),
    exit: (code) => exits.push(code),
  });
  return { lifecycle, logs, exits, faults, server, shutdown, released };
}

describe('Shutdown', () => {
  it('waits for work after an answer (a Slack handler after its ack) before it exits', async () => {
    const { lifecycle, exits, shutdown, server, logs } = await harness();
    let release!: () => void;
    void lifecycle.track(new Promise<void>((resolve) => (release = resolve)));
    shutdown.onSignal('SIGTERM');
    expect(lifecycle.draining).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(exits).toEqual([]);
    expect(server.listening).toBe(false);
    release();
    await eventually(() => exits.length > 0);
    expect(exits).toEqual([0]);
    expect(logs.map((l) => l.msg)).toEqual(['drain started', 'drain finished']);
    expect(logs[0]).toMatchObject({ reason: 'signal SIGTERM', requests: 0, work: 1 });
    expect(logs[1]).toMatchObject({ drained: true, workAbandoned: 0, exitCode: 0 });
  });

  it('exits at once on a second signal, with 128 + its number', async () => {
    const { lifecycle, exits, shutdown } = await harness(100);
    lifecycle.requestStarted();
    shutdown.onSignal('SIGTERM');
    shutdown.onSignal('SIGTERM');
    expect(exits).toEqual([143]);
    // In a process that was the end; here the drain still runs out, then calls exit too.
    await eventually(() => exits.length === 2);
  });

  it('drains after a fault, logs its kind and name only, counts it, and exits 1', async () => {
    const { exits, shutdown, logs, faults } = await harness();
    shutdown.onFault('unhandled_rejection', new TypeError('secret-in-message'));
    await eventually(() => exits.length > 0);
    expect(exits).toEqual([1]);
    expect(faults).toEqual(['unhandled_rejection']);
    expect(logs[0]).toEqual(
      expect.objectContaining({ msg: 'fault outside a request', error: 'TypeError' }),
    );
    expect(JSON.stringify(logs)).not.toContain('secret-in-message');
  });
});
