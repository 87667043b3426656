import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CloudEvent, HTTP } from 'cloudevents';
import { signSlackRequest } from '../../lib/slack/signature';
import { startDeliverer, type Deliverer, type DeliverySpec } from '../../testing/deliverer';
import { metricValue } from '../../testing/metrics-text';
import { startSlackApiStandIn, type SlackApiStandIn } from '../../testing/slack-api';
import { startHooksStandIn, type HooksStandIn } from '../../testing/slack-hooks';
import { APP_PASSWORD, migratedCluster, itWithPostgres } from '../../testing/postgres';
import {
  ENTRY,
  requireBuild,
  startProcess,
  startWorkerProcess,
  type RunningProcess,
} from '../../testing/process';
import { SYSTEM_TOLERANCE_MS } from './tolerance';

/**
 * Slack work across processes: workers (the production process with the tests' handler,
 * testing/worker-entry.ts) and the dead-letter function (the built entry), on a real PostgreSQL,
 * fed by a stand-in for Knative's Kafka Broker and Trigger (testing/deliverer.ts) that retries and
 * dead-letters as Knative does. Nothing of the path between them is faked.
 */
let deliverer: Deliverer | undefined;
const processes: RunningProcess[] = [];
let runsFile = '';

const cluster = migratedCluster(['slack_work']);
beforeEach(() => {
  runsFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'coffeebuddy-runs-')), 'runs');
  fs.writeFileSync(runsFile, '');
});

afterEach(async () => {
  await deliverer?.close();
  deliverer = undefined;
  await Promise.all(processes.splice(0).map((p) => p.stop()));
  fs.rmSync(path.dirname(runsFile), { recursive: true, force: true });
}, 30_000);

const SOURCE = 'https://slack.com/teams/T0001';
const SECRET = 'eventing-system-secret';
/** Slack waits this long for its acknowledgement. */
const SLACK_DEADLINE_MS = 3000;
/** What the worker Trigger would say, with short waits: Knative's exponential backoff. */
const DELIVERY: Partial<DeliverySpec> = {
  retry: 10,
  backoffPolicy: 'exponential',
  backoffDelayMs: 100,
  timeoutMs: 5000,
};

function env(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    ...cluster()!.env({ PGPASSWORD: APP_PASSWORD }),
    SLACK_HANDLER_TIMEOUT_MS: '1000',
    SLACK_WORK_LEASE_MS: '2000',
    WORK_RUNS_FILE: runsFile,
    ...extra,
  };
}

async function worker(extra: NodeJS.ProcessEnv = {}): Promise<RunningProcess> {
  const started = await startWorkerProcess(env(extra));
  processes.push(started);
  return started;
}

/** The handler's runs: `start` and `end` lines with the event's text and the process id. */
function runs(kind: 'start' | 'end', text?: string): { text: string; pid: number }[] {
  return fs
    .readFileSync(runsFile, 'utf8')
    .split('\n')
    .filter((line) => line.startsWith(`${kind} `))
    .map((line) => {
      const [, mark, pid] = line.split(' ');
      return { text: mark!, pid: Number(pid) };
    })
    .filter((run) => text === undefined || run.text === text);
}

function slackEvent(id: string): CloudEvent<unknown> {
  return new CloudEvent({
    id,
    source: SOURCE,
    type: 'com.slack.event.app_mention',
    datacontenttype: 'application/json',
    data: { type: 'event_callback', event_id: id, event: { type: 'app_mention', text: id } },
  });
}

/** What the ingress does: POSTs the event to the Broker (K_SINK) and expects its 202. */
async function publish(event: CloudEvent<unknown>): Promise<void> {
  const message = HTTP.binary(event);
  const res = await fetch(deliverer!.url, {
    method: 'POST',
    headers: message.headers as Record<string, string>,
    body: message.body as string,
    signal: AbortSignal.timeout(5000),
  });
  expect(res.status).toBe(202);
}

async function scrape(process: RunningProcess): Promise<string> {
  const res = await fetch(`${process.url}/metrics`, { signal: AbortSignal.timeout(5000) });
  return res.text();
}

function rows(): Promise<Record<string, unknown>[]> {
  return cluster()!.admin(
    'SELECT id, state, attempts, last_error, error_code, error_dest FROM slack_work ORDER BY id',
    'coffeebuddy',
  );
}

describe('Slack work through Knative Eventing, across processes', () => {
  itWithPostgres(
    'a worker killed with SIGKILL inside a slow handler: another does the event once, after the lease',
    async () => {
      const [a, b] = await Promise.all([
        worker({ WORK_HANDLER_DELAY_MS: '800' }),
        worker({ WORK_HANDLER_DELAY_MS: '800' }),
      ]);
      deliverer = await startDeliverer();
      deliverer.addTrigger({
        url: 'http://coffeebuddy-slack-worker.coffeebuddy.svc.cluster.local',
        endpoints: [`${a.url}/`, `${b.url}/`],
        delivery: DELIVERY,
      });
      await publish(slackEvent('Kill1'));
      await deliverer.waitFor(() => runs('start').length === 1, 10_000, 'the handler to start');
      const first = runs('start')[0]!.pid;
      const [killed, survivor] = first === a.child.pid ? [a, b] : [b, a];
      killed.child.kill('SIGKILL');
      await deliverer.waitForSettled(20_000);

      expect(deliverer.settlements.map((s) => s.outcome)).toEqual(['delivered']);
      expect(runs('end', 'Kill1')).toEqual([{ text: 'Kill1', pid: survivor.child.pid }]);
      const [row] = await rows();
      expect(row).toMatchObject({ id: 'Kill1', state: 'done' });
      // The killed claim counted, the survivor's took it over once the lease had ended.
      expect(row!.attempts).toBe(2);
      const statuses = deliverer.attempts.map((t) => t.status ?? t.error);
      expect(statuses[0]).toMatch(/^E|timeout/);
      expect(statuses.at(-1)).toBe(204);
      expect(
        metricValue(await scrape(survivor), 'coffeebuddy_slack_work_total', {
          kind: 'events',
          outcome: 'done',
        }),
      ).toBe(1);
    },
    40_000,
  );

  itWithPostgres(
    'two workers given the same 40 ids at once, each twice: 40 done in all, each once',
    async () => {
      const [a, b] = await Promise.all([
        worker({ WORK_HANDLER_DELAY_MS: '20' }),
        worker({ WORK_HANDLER_DELAY_MS: '20' }),
      ]);
      deliverer = await startDeliverer({ concurrency: 32 });
      deliverer.addTrigger({
        url: 'http://coffeebuddy-slack-worker.coffeebuddy.svc.cluster.local',
        endpoints: [`${a.url}/`, `${b.url}/`],
        delivery: DELIVERY,
      });
      const ids = Array.from({ length: 40 }, (_, i) => `Twice${i}`);
      await Promise.all([...ids, ...ids].map((id) => publish(slackEvent(id))));
      await deliverer.waitForSettled(30_000);

      expect(deliverer.settlements.filter((s) => s.outcome === 'delivered')).toHaveLength(80);
      const ends = runs('end');
      expect(ends.map((run) => run.text).sort()).toEqual([...ids].sort());
      // Both workers took a share.
      expect(new Set(ends.map((run) => run.pid)).size).toBe(2);
      const done = await rows();
      expect(done.filter((row) => row.state === 'done')).toHaveLength(40);
      let counted = 0;
      for (const process of [a, b]) {
        counted += metricValue(await scrape(process), 'coffeebuddy_slack_work_total', {
          kind: 'events',
          outcome: 'done',
        })!;
      }
      expect(counted).toBe(40);
    },
    60_000,
  );

  itWithPostgres(
    'PostgreSQL stopped: the worker answers 503, Knative retries, the event is done once after the restart',
    async () => {
      const a = await worker({ PG_CONNECT_TIMEOUT_MS: '300', READINESS_CACHE_TTL_MS: '0' });
      deliverer = await startDeliverer();
      deliverer.addTrigger({ url: `${a.url}/`, delivery: DELIVERY });
      await cluster()!.stop();
      try {
        await publish(slackEvent('Pg1'));
        await deliverer.waitFor(
          () => deliverer!.attempts.some((t) => t.status === 503),
          10_000,
          'a 503 from the worker',
        );
        const ready = await fetch(`${a.url}/health/ready`);
        expect(ready.status).toBe(503);
        expect(JSON.stringify(await ready.json())).toContain('postgres');
      } finally {
        await cluster()!.start();
      }
      await deliverer.waitForSettled(20_000);
      expect(deliverer.settlements.map((s) => s.outcome)).toEqual(['delivered']);
      expect(runs('end', 'Pg1')).toHaveLength(1);
      expect(await rows()).toEqual([expect.objectContaining({ id: 'Pg1', state: 'done' })]);
    },
    40_000,
  );

  itWithPostgres(
    'a handler failing every time: retried, dead-lettered to slackDeadLetter and recorded dead',
    async () => {
      requireBuild();
      const a = await worker({ WORK_HANDLER_FAILS: 'always' });
      const deadLetter = await startProcess({
        args: [ENTRY],
        env: {
          NODE_ENV: 'test',
          LISTEN_HOST: '127.0.0.1',
          ...env(),
          FUNCTION_TARGET: 'slackDeadLetter',
        },
      });
      processes.push(deadLetter);
      deliverer = await startDeliverer();
      const trigger = deliverer.addTrigger({
        url: `${a.url}/`,
        delivery: {
          ...DELIVERY,
          retry: 2,
          backoffDelayMs: 20,
          deadLetterSink: `${deadLetter.url}/`,
        },
      });
      await publish(slackEvent('Dead1'));
      await deliverer.waitForSettled(20_000);

      expect(deliverer.settlements.map((s) => s.outcome)).toEqual(['deadLettered']);
      expect(runs('start', 'Dead1')).toHaveLength(3);
      expect(runs('end')).toEqual([]);
      expect(await rows()).toEqual([
        expect.objectContaining({
          id: 'Dead1',
          state: 'dead',
          attempts: 3,
          last_error: 'Error: this handler always fails',
          error_code: '500',
          error_dest: trigger.url,
        }),
      ]);
      const line = deadLetter.logLines().find((l) => l.msg === 'slack event dead-lettered');
      expect(line).toMatchObject({
        level: 'error',
        id: 'Dead1',
        type: 'com.slack.event.app_mention',
      });
      expect(JSON.stringify(line)).not.toContain('event_callback');
      // The worker said what broke, once an attempt, with no secret in any line.
      const failures = a.logLines().filter((l) => l.msg === 'slack handler failed');
      expect(failures).toHaveLength(3);
      expect(failures.map((l) => [l.attempt, (l.error as { message: string }).message])).toEqual([
        [1, 'this handler always fails'],
        [2, 'this handler always fails'],
        [3, 'this handler always fails'],
      ]);
      for (const output of [a.output(), deadLetter.output()]) {
        expect(output).not.toContain(APP_PASSWORD);
      }
      expect(
        metricValue(await scrape(a), 'coffeebuddy_slack_work_total', {
          kind: 'events',
          outcome: 'failed',
        }),
      ).toBe(3);
      expect(
        metricValue(await scrape(deadLetter), 'coffeebuddy_slack_work_total', {
          kind: 'events',
          outcome: 'dead_lettered',
        }),
      ).toBe(1);
    },
    40_000,
  );

  /** The ingress, as built, publishing to the stand-in Broker. */
  async function ingress(): Promise<RunningProcess> {
    requireBuild();
    const started = await startProcess({
      args: [ENTRY],
      env: {
        NODE_ENV: 'test',
        LISTEN_HOST: '127.0.0.1',
        SLACK_SIGNING_SECRET: SECRET,
        K_SINK: deliverer!.url,
        K_CE_OVERRIDES: '{"extensions":{"cluster":"test"}}',
      },
    });
    processes.push(started);
    return started;
  }

  /** Slack delivering an event (retry 0) or retrying it, signed; the status and how long it took. */
  async function slackDelivers(
    to: RunningProcess,
    id: string,
    retry = 0,
  ): Promise<{ status: number; ms: number }> {
    const body = JSON.stringify({
      type: 'event_callback',
      team_id: 'T0001',
      event_id: id,
      event: { type: 'app_mention', text: id },
    });
    const timestamp = String(Math.floor(Date.now() / 1000));
    const started = performance.now();
    const res = await fetch(`${to.url}/slack/events`, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        'X-Slack-Request-Timestamp': timestamp,
        'X-Slack-Signature': signSlackRequest(SECRET, timestamp, body),
        ...(retry > 0
          ? { 'X-Slack-Retry-Num': String(retry), 'X-Slack-Retry-Reason': 'http_error' }
          : {}),
      },
      body,
      signal: AbortSignal.timeout(10_000),
    });
    await res.arrayBuffer();
    return { status: res.status, ms: performance.now() - started };
  }

  itWithPostgres(
    'Slack’s retries through two ingress processes: published by each, done once',
    async () => {
      deliverer = await startDeliverer();
      const a = await worker();
      deliverer.addTrigger({
        url: `${a.url}/`,
        filter: (event) => event.type.startsWith('com.slack.'),
        delivery: DELIVERY,
      });
      const [first, second] = await Promise.all([ingress(), ingress()]);
      expect((await slackDelivers(first, 'Retried1')).status).toBe(200);
      expect((await slackDelivers(second, 'Retried1', 1)).status).toBe(200);
      expect((await slackDelivers(second, 'Retried1', 2)).status).toBe(200);
      await deliverer.waitForSettled(20_000);

      // Each ingress published it once (the second knew its own retry), the worker ran it once.
      const published = deliverer.events.map((e) => e.event);
      expect(published.map((e) => e.id)).toEqual(['Retried1', 'Retried1']);
      expect(published[0]).toMatchObject({
        source: SOURCE,
        type: 'com.slack.event.app_mention',
        cluster: 'test',
      });
      expect(runs('end')).toEqual([{ text: 'Retried1', pid: expect.any(Number) }]);
      const metrics = await scrape(a);
      expect(
        metricValue(metrics, 'coffeebuddy_slack_work_total', { kind: 'events', outcome: 'done' }),
      ).toBe(1);
      expect(
        metricValue(metrics, 'coffeebuddy_slack_work_total', {
          kind: 'events',
          outcome: 'duplicate',
        }),
      ).toBe(1);
      expect(
        metricValue(await scrape(second), 'coffeebuddy_slack_requests_total', {
          kind: 'events',
          outcome: 'retry_duplicate',
        }),
      ).toBe(1);
    },
    40_000,
  );

  for (const failure of ['fail503', 'refuse', 'hang'] as const) {
    itWithPostgres(
      `the Broker's ingress failing (${failure}): Slack gets 503 within its 3 s, the retry is published and done`,
      async () => {
        deliverer = await startDeliverer();
        const a = await worker();
        deliverer.addTrigger({ url: `${a.url}/`, delivery: DELIVERY });
        const slack = await ingress();
        await deliverer.setIngest(failure);
        const refused = await slackDelivers(slack, `Sink${failure}`);
        expect(refused.status).toBe(503);
        expect(refused.ms).toBeLessThan(SLACK_DEADLINE_MS + SYSTEM_TOLERANCE_MS);
        expect(
          metricValue(await scrape(slack), 'coffeebuddy_slack_requests_total', {
            kind: 'events',
            outcome: 'publish_failed',
          }),
        ).toBe(1);
        expect(deliverer.events).toEqual([]);

        await deliverer.setIngest('accept');
        expect((await slackDelivers(slack, `Sink${failure}`, 1)).status).toBe(200);
        await deliverer.waitForSettled(20_000);
        expect(deliverer.events.map((e) => e.event.id)).toEqual([`Sink${failure}`]);
        expect(runs('end')).toEqual([{ text: `Sink${failure}`, pid: expect.any(Number) }]);
      },
      40_000,
    );
  }

  describe('the mention feature, served by the built entry (the seat), against the Slack Web API stand-in', () => {
    const TOKEN = 'xoxb-eventing-system-token';
    let slack: SlackApiStandIn | undefined;
    let hooks: HooksStandIn | undefined;
    afterEach(async () => {
      await Promise.all([slack?.close(), hooks?.close()]);
      slack = undefined;
      hooks = undefined;
    });

    /** The image's entry with the seat's handlers: no test handlers anywhere. */
    async function entry(env: NodeJS.ProcessEnv): Promise<RunningProcess> {
      requireBuild();
      const started = await startProcess({
        args: [ENTRY],
        env: {
          NODE_ENV: 'test',
          LISTEN_HOST: '127.0.0.1',
          SLACK_BOT_TOKEN: TOKEN,
          SLACK_API_URL: slack!.url,
          ...env,
        },
      });
      processes.push(started);
      return started;
    }

    /** A signed mention of CoffeeBuddy in channel C0001, at ts 1700000000.000100. */
    async function mention(to: RunningProcess, id: string): Promise<number> {
      const body = JSON.stringify({
        type: 'event_callback',
        team_id: 'T0001',
        event_id: id,
        event: {
          type: 'app_mention',
          user: 'U0042',
          text: '<@U0BOT> coffee?',
          channel: 'C0001',
          ts: '1700000000.000100',
          event_ts: '1700000000.000100',
        },
      });
      const timestamp = String(Math.floor(Date.now() / 1000));
      const res = await fetch(`${to.url}/slack/events`, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          'X-Slack-Request-Timestamp': timestamp,
          'X-Slack-Signature': signSlackRequest(SECRET, timestamp, body),
        },
        body,
        signal: AbortSignal.timeout(10_000),
      });
      await res.arrayBuffer();
      return res.status;
    }

    const posts = () => slack!.callsOf('chat.postMessage').filter((call) => call.status === 200);

    itWithPostgres(
      'ingress → Broker → worker: exactly one post, in the mention’s thread',
      async () => {
        slack = await startSlackApiStandIn([TOKEN]);
        deliverer = await startDeliverer();
        const worker = await entry({ ...env(), FUNCTION_TARGET: 'slackWorker' });
        deliverer.addTrigger({ url: `${worker.url}/`, delivery: DELIVERY });
        const ingress = await entry({ SLACK_SIGNING_SECRET: SECRET, K_SINK: deliverer.url });
        expect(await mention(ingress, 'Mention1')).toBe(200);
        await deliverer.waitForSettled(20_000);

        expect(posts()).toHaveLength(1);
        expect(posts()[0]!.args).toMatchObject({
          channel: 'C0001',
          thread_ts: '1700000000.000100',
        });
        expect(String(posts()[0]!.args.text)).toContain('/coffee help');
        expect(await rows()).toEqual([expect.objectContaining({ id: 'Mention1', state: 'done' })]);
      },
      40_000,
    );

    itWithPostgres(
      'Slack answering 429 Retry-After: 7: the worker answers 429 with Retry-After ≥ 7, the Broker waits, the post is made once',
      async () => {
        slack = await startSlackApiStandIn([TOKEN]);
        slack.rateLimit('chat.postMessage', 1, 7);
        deliverer = await startDeliverer();
        const worker = await entry({ ...env(), FUNCTION_TARGET: 'slackWorker' });
        // retryAfterMax scaled down from the bundle's PT60S, so that the test does not wait 7 s.
        deliverer.addTrigger({
          url: `${worker.url}/`,
          delivery: { ...DELIVERY, retryAfterMaxMs: 500 },
        });
        const ingress = await entry({ SLACK_SIGNING_SECRET: SECRET, K_SINK: deliverer.url });
        expect(await mention(ingress, 'Limited1')).toBe(200);
        await deliverer.waitForSettled(20_000);

        const [first, second] = deliverer.attempts;
        expect(first).toMatchObject({ status: 429, waitMs: 500 });
        expect(Number(first!.retryAfter)).toBeGreaterThanOrEqual(7);
        expect(second).toMatchObject({ status: 204 });
        expect(second!.startedAt - first!.endedAt).toBeGreaterThanOrEqual(500 - 1);
        expect(posts()).toHaveLength(1);
        expect(
          metricValue(await scrape(worker), 'coffeebuddy_slack_work_total', {
            kind: 'events',
            outcome: 'rate_limited',
          }),
        ).toBe(1);
        expect(await rows()).toEqual([
          expect.objectContaining({ id: 'Limited1', state: 'done', attempts: 2 }),
        ]);
      },
      40_000,
    );

    /** A signed form to one of Slack's form URLs; the answer's status, body and time taken. */
    async function signedForm(
      to: RunningProcess,
      route: string,
      fields: Record<string, string>,
    ): Promise<{ status: number; body: string; ms: number }> {
      const body = new URLSearchParams(fields).toString();
      const timestamp = String(Math.floor(Date.now() / 1000));
      const started = performance.now();
      const res = await fetch(`${to.url}${route}`, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/x-www-form-urlencoded',
          'X-Slack-Request-Timestamp': timestamp,
          'X-Slack-Signature': signSlackRequest(SECRET, timestamp, body),
        },
        body,
        signal: AbortSignal.timeout(10_000),
      });
      const text = await res.text();
      return { status: res.status, body: text, ms: performance.now() - started };
    }

    itWithPostgres(
      '/coffee status through the Broker: acknowledged at once, answered once through respond() with the worker’s readiness',
      async () => {
        slack = await startSlackApiStandIn([TOKEN]);
        hooks = await startHooksStandIn();
        deliverer = await startDeliverer();
        const hooksEnv = { SLACK_RESPONSE_URL_PREFIX: hooks.prefix };
        const worker = await entry({ ...env(), ...hooksEnv, FUNCTION_TARGET: 'slackWorker' });
        deliverer.addTrigger({ url: `${worker.url}/`, delivery: DELIVERY });
        const ingress = await entry({
          ...hooksEnv,
          SLACK_SIGNING_SECRET: SECRET,
          K_SINK: deliverer.url,
        });
        const responseUrl = hooks.issue();
        const answered = await signedForm(ingress, '/slack/commands', {
          command: '/coffee',
          text: 'status',
          team_id: 'T0001',
          channel_id: 'C0001',
          user_id: 'U0042',
          response_url: responseUrl,
          trigger_id: '1.2.status',
        });
        expect(answered.status).toBe(200);
        expect(JSON.parse(answered.body)).toEqual({
          response_type: 'ephemeral',
          text: 'Checking…',
        });
        expect(answered.ms).toBeLessThan(SLACK_DEADLINE_MS + SYSTEM_TOLERANCE_MS);
        await deliverer.waitForSettled(20_000);

        // The worker's readiness: its own components (PostgreSQL), not the ingress's (Vault, Ory).
        expect(hooks.postsTo(responseUrl).map((post) => post.body)).toEqual([
          {
            response_type: 'ephemeral',
            text: 'CoffeeBuddy is ready.\n• postgres: ok',
          },
        ]);
        expect(deliverer.events.map(({ event }) => event.type)).toEqual([
          'com.slack.command.coffee',
        ]);
        expect(await rows()).toEqual([
          expect.objectContaining({
            id: deliverer.events[0]!.event.id,
            state: 'done',
            attempts: 1,
          }),
        ]);
        expect(
          metricValue(await scrape(worker), 'coffeebuddy_slack_api_calls_total', {
            method: 'response_url',
            outcome: 'ok',
          }),
        ).toBe(1);
      },
      40_000,
    );

    itWithPostgres(
      'the mention’s help button through the Broker: routed by its action_id, answered with the help text',
      async () => {
        slack = await startSlackApiStandIn([TOKEN]);
        hooks = await startHooksStandIn();
        deliverer = await startDeliverer();
        const hooksEnv = { SLACK_RESPONSE_URL_PREFIX: hooks.prefix };
        const worker = await entry({ ...env(), ...hooksEnv, FUNCTION_TARGET: 'slackWorker' });
        deliverer.addTrigger({ url: `${worker.url}/`, delivery: DELIVERY });
        const ingress = await entry({
          ...hooksEnv,
          SLACK_SIGNING_SECRET: SECRET,
          K_SINK: deliverer.url,
        });
        const responseUrl = hooks.issue('actions');
        const click = (actionId: string) =>
          signedForm(ingress, '/slack/interactions', {
            payload: JSON.stringify({
              type: 'block_actions',
              team: { id: 'T0001' },
              user: { id: 'U0042', team_id: 'T0001' },
              response_url: responseUrl,
              actions: [{ action_id: actionId, block_id: 'b1', type: 'button' }],
            }),
          });
        expect((await click('coffeebuddy_help')).status).toBe(200);
        // A button nobody handles: acknowledged, counted, never published.
        expect(await click('somebody_else')).toMatchObject({ status: 200, body: '' });
        await deliverer.waitForSettled(20_000);
        const [post] = hooks.postsTo(responseUrl);
        expect(post?.body).toMatchObject({ response_type: 'ephemeral', replace_original: false });
        expect(String(post?.body.text)).toContain('`/coffee status`');
        expect(hooks.posts).toHaveLength(1);
        expect(deliverer.events).toHaveLength(1);
        expect(
          metricValue(await scrape(ingress), 'coffeebuddy_slack_requests_total', {
            kind: 'interactions',
            outcome: 'unhandled',
          }),
        ).toBe(1);
      },
      40_000,
    );

    itWithPostgres(
      'in process (npm start, no K_SINK): the seat answers the mention, one post',
      async () => {
        slack = await startSlackApiStandIn([TOKEN]);
        const started = await entry({ SLACK_SIGNING_SECRET: SECRET });
        expect(await mention(started, 'InProcess1')).toBe(200);
        const until = Date.now() + 10_000;
        while (posts().length === 0 && Date.now() < until) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        expect(posts()).toHaveLength(1);
        expect(posts()[0]!.args).toMatchObject({
          channel: 'C0001',
          thread_ts: '1700000000.000100',
        });
        expect(started.output()).not.toContain(TOKEN);
        expect(started.output()).not.toContain(SECRET);
      },
      30_000,
    );
  });
});
