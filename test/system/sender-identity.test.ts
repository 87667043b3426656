import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CloudEvent, HTTP } from 'cloudevents';
import { startDeliverer, type Deliverer } from '../../testing/deliverer';
import { startKubeIssuer, type KubeIssuer } from '../../testing/kube-issuer';
import { metricValue } from '../../testing/metrics-text';
import { APP_PASSWORD, itWithPostgres, migratedCluster } from '../../testing/postgres';
import {
  ENTRY,
  requireBuild,
  runToExit,
  startProcess,
  type RunningProcess,
} from '../../testing/process';
import { eventually } from '../../testing/tools';

/**
 * Sender identity across processes: the built entry as the worker and the dead-letter function
 * with EVENTING_OIDC_AUDIENCE, a stand-in for the API server's issuer, the Broker stand-in sending
 * each Trigger's token; a forged POST without one is refused; production refuses to start without
 * an audience.
 */

const cluster = migratedCluster(['slack_work']);
const WORKER_AUDIENCE = 'coffeebuddy-worker.coffeebuddy';
const DEAD_LETTER_AUDIENCE = 'coffeebuddy-dead-letter.coffeebuddy';
const TRIGGER_SA = 'system:serviceaccount:coffeebuddy:oidc-trigger-coffeebuddy-worker';

let issuer: KubeIssuer | undefined;
let deliverer: Deliverer | undefined;
let dir = '';
const processes: RunningProcess[] = [];

beforeAll(() => {
  requireBuild();
});
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coffeebuddy-oidc-'));
});
afterEach(async () => {
  await deliverer?.close();
  deliverer = undefined;
  await Promise.all(processes.splice(0).map((p) => p.stop()));
  await issuer?.close();
  issuer = undefined;
  fs.rmSync(dir, { recursive: true, force: true });
}, 30_000);

async function eventFunction(
  target: 'slackWorker' | 'slackDeadLetter',
  audience: string,
): Promise<RunningProcess> {
  const tokenFile = path.join(dir, 'token');
  fs.writeFileSync(tokenFile, issuer!.readerToken);
  const started = await startProcess({
    args: [ENTRY],
    env: {
      NODE_ENV: 'test',
      LISTEN_HOST: '127.0.0.1',
      ...cluster()!.env({ PGPASSWORD: APP_PASSWORD }),
      FUNCTION_TARGET: target,
      EVENTING_OIDC_AUDIENCE: audience,
      EVENTING_OIDC_ISSUER: issuer!.url,
      EVENTING_OIDC_SUBJECTS: TRIGGER_SA,
      EVENTING_OIDC_TOKEN_FILE: tokenFile,
      EVENTING_OIDC_CA_FILE: '',
    },
  });
  processes.push(started);
  return started;
}

/**
 * A Slack event of a type no feature of the built entry handles (done, no row), or, with `inner`
 * another type than its own, one the worker refuses 400 and the dead-letter Service records.
 */
function slackEvent(id: string, inner = 'reaction_added'): CloudEvent<unknown> {
  return new CloudEvent({
    id,
    source: 'https://slack.com/teams/T0001',
    type: 'com.slack.event.reaction_added',
    datacontenttype: 'application/json',
    data: { type: 'event_callback', event_id: id, event: { type: inner, reaction: 'coffee' } },
  });
}

const rows = () => cluster()!.admin('SELECT id, state FROM slack_work ORDER BY id', 'coffeebuddy');

describe('sender identity through the Broker stand-in', () => {
  itWithPostgres(
    'the Trigger’s token gets events done; a forged POST without one is refused and leaves no row',
    async () => {
      issuer = await startKubeIssuer();
      const [worker, deadLetter] = await Promise.all([
        eventFunction('slackWorker', WORKER_AUDIENCE),
        eventFunction('slackDeadLetter', DEAD_LETTER_AUDIENCE),
      ]);
      deliverer = await startDeliverer();
      deliverer.addTrigger({
        url: `${worker.url}/`,
        delivery: {
          retry: 2,
          backoffDelayMs: 50,
          timeoutMs: 5000,
          deadLetterSink: `${deadLetter.url}/`,
        },
        token: (target) =>
          issuer!.sign({
            sub: TRIGGER_SA,
            aud: target === 'subscriber' ? WORKER_AUDIENCE : DEAD_LETTER_AUDIENCE,
          }),
      });
      // Two the worker takes (no feature handles them: done, no row), one it refuses 400, which
      // the Broker dead-letters with the dead-letter sink's token.
      const events = [slackEvent('EvA'), slackEvent('EvB'), slackEvent('EvBad', 'app_mention')];
      for (const event of events) {
        const message = HTTP.binary(event);
        const res = await fetch(deliverer.url, {
          method: 'POST',
          headers: message.headers as Record<string, string>,
          body: message.body as string,
          signal: AbortSignal.timeout(5000),
        });
        expect(res.status).toBe(202);
      }
      await deliverer.waitForSettled(20_000);
      // Delivered concurrently: settled in any order.
      const settled = deliverer.settlements.map((s) => [s.eventId, s.outcome]);
      expect(settled.sort((a, b) => String(a[0]).localeCompare(String(b[0])))).toEqual([
        ['EvA', 'delivered'],
        ['EvB', 'delivered'],
        ['EvBad', 'deadLettered'],
      ]);
      const done = metricValue(
        await (await fetch(`${worker.url}/metrics`)).text(),
        'coffeebuddy_slack_work_total',
        {
          kind: 'events',
          outcome: 'done',
        },
      );
      expect(done).toBe(2);
      expect(await rows()).toEqual([{ id: 'EvBad', state: 'dead' }]);

      // Any pod in the cluster that can reach the worker, without the Trigger's token.
      for (const target of [worker, deadLetter]) {
        const forged = HTTP.binary(slackEvent('EvForged'));
        const res = await fetch(`${target.url}/`, {
          method: 'POST',
          headers: forged.headers as Record<string, string>,
          body: forged.body as string,
          signal: AbortSignal.timeout(5000),
        });
        expect(res.status).toBe(401);
        expect(await res.json()).toEqual({ error: 'unauthenticated' });
        const metrics = await (await fetch(`${target.url}/metrics`)).text();
        expect(
          metricValue(metrics, 'coffeebuddy_event_auth_failures_total', { reason: 'missing' }),
        ).toBe(1);
      }
      expect(await rows()).toEqual([{ id: 'EvBad', state: 'dead' }]);
      // One read of the keys a process served every delivery.
      expect(issuer.jwksFetches).toBe(2);
      const output = worker.output() + deadLetter.output();
      expect(output).not.toContain(issuer.readerToken);
    },
  );
});

describe('start-up in production', () => {
  const production = {
    NODE_ENV: 'production',
    VAULT_ADDR: 'https://vault.example',
    ORY_URL: 'https://ory.example',
    PG_PASSWORD_VAULT_PATH: 'coffeebuddy/postgres',
    VAULT_TOKEN: 'vault-token',
  };

  it.each(['slackWorker', 'slackDeadLetter'])(
    '%s refuses to start without EVENTING_OIDC_AUDIENCE (exit 78, one message)',
    async (target) => {
      const { code, stderr } = await runToExit(
        [ENTRY],
        { ...production, FUNCTION_TARGET: target },
        15_000,
      );
      expect(code).toBe(78);
      expect(stderr).toContain(`EVENTING_OIDC_AUDIENCE: must be set for ${target} in production`);
    },
  );

  it('starts with EVENTING_OIDC_AUDIENCE=none, warning once', async () => {
    const started = await startProcess({
      args: [ENTRY],
      env: {
        ...production,
        LISTEN_HOST: '127.0.0.1',
        FUNCTION_TARGET: 'slackWorker',
        EVENTING_OIDC_AUDIENCE: 'none',
      },
    });
    processes.push(started);
    await eventually(() =>
      started.logLines().some((line) => line.msg === 'event deliveries are not authenticated'),
    );
    const warnings = started
      .logLines()
      .filter((line) => line.msg === 'event deliveries are not authenticated');
    expect(warnings).toEqual([expect.objectContaining({ level: 'warn', function: 'slackWorker' })]);
  });
});
