import path from 'node:path';
import { signSlackRequest } from '../../lib/slack/signature';
import { metricValue } from '../../testing/metrics-text';
import {
  REPO_ROOT,
  requireBuild,
  startCoffeebuddy,
  type RunningProcess,
} from '../../testing/process';
import { startSink, type Sink } from '../../testing/sink';
import {
  startOryStandIn,
  startVaultStandIn,
  type OryStandIn,
  type VaultStandIn,
} from '../../testing/standins';
import { eventually } from '../../testing/tools';
import { SYSTEM_TOLERANCE_MS } from './tolerance';

/** The production entry publishing to K_SINK: Slack's deadline, and the SDK loaded only then. */

const SECRET = 'publish-system-secret';
/** Slack waits 3 s; the largest SLACK_PUBLISH_TIMEOUT_MS leaves the ack's way back inside it. */
const SLACK_DEADLINE_MS = 3000;
const MAX_PUBLISH_TIMEOUT_MS = 2500;
const PRELOAD = path.join(REPO_ROOT, 'test', 'support', 'required-modules.js');
const CHUNK = './cloudevents.cjs';

const eventBody = (id: string) =>
  JSON.stringify({
    type: 'event_callback',
    team_id: 'T0001',
    event_id: id,
    event: { type: 'app_mention', text: 'coffee?' },
  });

function postEvent(server: RunningProcess, body: string) {
  const timestamp = String(Math.floor(Date.now() / 1000));
  return fetch(`${server.url}/slack/events`, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      'X-Slack-Request-Timestamp': timestamp,
      'X-Slack-Signature': signSlackRequest(SECRET, timestamp, body),
    },
    body,
  });
}

/** The modules the process has required so far, from the preloaded probe. */
async function requiredBy(server: RunningProcess): Promise<string[]> {
  const before = server.output().split('REQUIRED ').length;
  server.child.kill('SIGUSR2');
  await eventually(() => server.output().split('REQUIRED ').length > before);
  const line = server.output().split('REQUIRED ').at(-1)!.split('\n')[0]!;
  return JSON.parse(line) as string[];
}

describe('the entry publishing to K_SINK', () => {
  let vault: VaultStandIn;
  let ory: OryStandIn;
  let sink: Sink;
  let server: RunningProcess | undefined;

  beforeAll(async () => {
    requireBuild();
    vault = await startVaultStandIn();
    ory = await startOryStandIn();
    vault.tokens.set('hvs.publish', Date.now() + 600_000);
    vault.secrets['coffeebuddy/slack'] = { signing_secret: SECRET };
  });
  beforeEach(async () => {
    sink = await startSink();
  });
  afterEach(async () => {
    await server?.stop();
    server = undefined;
    await sink.close();
  });
  afterAll(() => Promise.all([vault.close(), ory.close()]));

  const start = async (env: NodeJS.ProcessEnv, nodeArgs: string[] = []) => {
    server = await startCoffeebuddy(
      vault.url,
      ory.url,
      { VAULT_TOKEN: 'hvs.publish', SLACK_SIGNING_SECRET_VAULT_PATH: 'coffeebuddy/slack', ...env },
      nodeArgs,
    );
    return server;
  };

  it('answers Slack 503 within 3 s when the sink never answers, at the largest publish timeout', async () => {
    sink.answer = { kind: 'hang' };
    const running = await start({
      K_SINK: sink.url,
      SLACK_PUBLISH_TIMEOUT_MS: String(MAX_PUBLISH_TIMEOUT_MS),
    });
    const started = performance.now();
    const res = await postEvent(running, eventBody('EvHang'));
    const elapsed = performance.now() - started;
    expect(res.status).toBe(503);
    expect(sink.received).toHaveLength(1);
    // A timer may fire up to a millisecond early by the wall clock.
    expect(elapsed).toBeGreaterThanOrEqual(MAX_PUBLISH_TIMEOUT_MS - 1);
    expect(elapsed).toBeLessThan(SLACK_DEADLINE_MS + SYSTEM_TOLERANCE_MS);
    const metrics = await (await fetch(`${running.url}/metrics`)).text();
    expect(
      metricValue(metrics, 'coffeebuddy_slack_requests_total', {
        kind: 'events',
        outcome: 'publish_failed',
      }),
    ).toBe(1);
    await eventually(() => running.logLines().some((l) => l.msg === 'cloudevent not published'));
    expect(running.logLines()).toContainEqual(
      expect.objectContaining({
        msg: 'cloudevent not published',
        id: 'EvHang',
        reason: `timeout after ${MAX_PUBLISH_TIMEOUT_MS} ms`,
      }),
    );
    expect(running.output()).not.toContain('coffee?');
  });

  it('publishes, and acknowledges once the sink answered 202', async () => {
    const running = await start({ K_SINK: sink.url });
    const res = await postEvent(running, eventBody('EvOk'));
    expect([res.status, await res.text()]).toEqual([200, '']);
    expect(sink.events().map((e) => [e.id, e.type])).toEqual([
      ['EvOk', 'com.slack.event.app_mention'],
    ]);
  });

  it('loads the CloudEvents SDK only with K_SINK (the probe sees the chunk when it is loaded)', async () => {
    const without = await start({}, ['-r', PRELOAD]);
    await postEvent(without, eventBody('EvLocal'));
    expect(await requiredBy(without)).not.toContain(CHUNK);
    await without.stop();
    const withSink = await start({ K_SINK: sink.url }, ['-r', PRELOAD]);
    expect(await requiredBy(withSink)).toContain(CHUNK);
  });
});
