import { Registry } from 'prom-client';
import { createLogger } from '../../lib/logger';
import { createSlackApiMetrics } from '../../lib/slack/api-metrics';
import { SlackApiError, SlackNetworkError, SlackRateLimitedError } from '../../lib/slack/client';
import {
  RESPONSE_URL_LIFETIME_MS,
  ResponseUrls,
  SlackRespondRefusedError,
} from '../../lib/slack/respond';
import { metricValue } from '../../testing/metrics-text';
import { startHooksStandIn, type HooksStandIn } from '../../testing/slack-hooks';
import { eventually } from '../../testing/tools';

/** respond() against the response URL stand-in, which answers as Slack's hooks do. */
let hooks: HooksStandIn;
beforeAll(async () => {
  hooks = await startHooksStandIn();
});
afterAll(() => hooks.close());

let registry: Registry;
let lines: Record<string, unknown>[];
let clock: number;
let client: ResponseUrls;
beforeEach(() => {
  hooks.reset();
  registry = new Registry();
  lines = [];
  clock = Date.now();
  client = new ResponseUrls({
    prefix: hooks.prefix,
    timeoutMs: 2000,
    logger: createLogger('debug', (line) => lines.push(JSON.parse(line))),
    metrics: createSlackApiMetrics(registry),
    now: () => clock,
  });
});
afterEach(() => {
  client.close();
});

const count = async (outcome: string) =>
  metricValue(await registry.metrics(), 'coffeebuddy_slack_api_calls_total', {
    method: 'response_url',
    outcome,
  });

describe('ResponseUrls', () => {
  it('posts the message as JSON, a text as {text}, counted ok under response_url', async () => {
    const url = hooks.issue();
    await client.respond(url, clock, 'Checking…');
    await client.respond(url, clock, {
      response_type: 'in_channel',
      replace_original: true,
      blocks: [{ type: 'divider' }],
    });
    expect(hooks.postsTo(url).map((post) => [post.status, post.body])).toEqual([
      [200, { text: 'Checking…' }],
      [200, { response_type: 'in_channel', replace_original: true, blocks: [{ type: 'divider' }] }],
    ]);
    expect(await count('ok')).toBe(2);
  });

  it('sends Slack’s five uses and refuses the sixth before sending it, counted refused', async () => {
    const url = hooks.issue();
    for (let use = 1; use <= 5; use += 1) await client.respond(url, clock, `use ${use}`);
    await expect(client.respond(url, clock, 'use 6')).rejects.toEqual(
      new SlackRespondRefusedError('uses_spent'),
    );
    expect(hooks.postsTo(url)).toHaveLength(5);
    expect([await count('ok'), await count('refused')]).toEqual([5, 1]);
    expect(lines).toEqual([
      expect.objectContaining({ level: 'warn', msg: 'respond refused', reason: 'uses_spent' }),
    ]);
    // Named, so that a handler's failure line and the work table say what refused it.
    const refused = await client.respond(url, clock, 'use 7').catch((error: unknown) => error);
    expect(refused).toMatchObject({
      name: 'SlackRespondRefusedError',
      message: 'response_url refused: uses_spent',
      reason: 'uses_spent',
    });
    // Another URL has its own budget.
    await client.respond(hooks.issue(), clock, 'fresh');
  });

  it('refuses a URL 30 minutes after Slack issued it, and counts them from the first use when not told', async () => {
    const old = hooks.issue('commands', clock - RESPONSE_URL_LIFETIME_MS);
    await expect(client.respond(old, clock - RESPONSE_URL_LIFETIME_MS, 'late')).rejects.toEqual(
      new SlackRespondRefusedError('expired'),
    );
    const url = hooks.issue();
    await client.respond(url, undefined, 'first');
    clock += RESPONSE_URL_LIFETIME_MS - 1;
    await client.respond(url, undefined, 'just in time');
    clock += 1;
    await expect(client.respond(url, undefined, 'too late')).rejects.toEqual(
      new SlackRespondRefusedError('expired'),
    );
    expect(hooks.posts.map((post) => post.body.text)).toEqual(['first', 'just in time']);
  });

  it('posts only under its prefix: anything else is refused and nothing is sent', async () => {
    const { host } = new URL(hooks.prefix);
    const elsewhere = [
      'https://example.com/commands/x',
      `http://${host}.example.com/commands/x`,
      `http://${host}@example.com/commands/x`,
      `http://user:pass@${host}/commands/x`,
      'not a url',
      `${hooks.prefix}${'x'.repeat(600)}`,
      `${hooks.prefix}${'x'.repeat(512 - hooks.prefix.length + 1)}`,
    ];
    for (const url of elsewhere) {
      await expect(client.respond(url, clock, 'x')).rejects.toEqual(
        new SlackRespondRefusedError('url_not_allowed'),
      );
    }
    expect(hooks.posts).toEqual([]);
    expect(await count('refused')).toBe(elsewhere.length);
    // 512 characters is still a URL it posts to (this one Slack never issued).
    const longest = `${hooks.prefix}${'x'.repeat(512 - hooks.prefix.length)}`;
    await expect(client.respond(longest, clock, 'x')).rejects.toEqual(
      new SlackApiError('response_url', 'invalid_url'),
    );
  });

  it('forgets the oldest URL past its bound, and URLs past their 30 minutes', async () => {
    const small = new ResponseUrls({
      prefix: hooks.prefix,
      timeoutMs: 2000,
      logger: createLogger('error', () => undefined),
      metrics: createSlackApiMetrics(new Registry()),
      now: () => clock,
      maxUrls: 2,
    });
    const [a, b, c] = [hooks.issue(), hooks.issue(), hooks.issue()];
    for (let use = 1; use <= 5; use += 1) await small.respond(a, undefined, `a${use}`);
    await small.respond(b, undefined, 'b');
    // Two URLs, within the bound: a is still counted, its sixth use refused here.
    await expect(small.respond(a, undefined, 'a6')).rejects.toEqual(
      new SlackRespondRefusedError('uses_spent'),
    );
    await small.respond(c, undefined, 'c');
    // a was forgotten when c came: counted afresh here, refused by Slack itself (its 6th).
    await expect(small.respond(a, undefined, 'a6')).rejects.toEqual(
      new SlackApiError('response_url', 'used_url'),
    );
    small.close();
    // A URL 30 minutes past its first use is forgotten by the next post to another.
    const b2 = hooks.issue();
    await client.respond(b2, undefined, 'first');
    clock += RESPONSE_URL_LIFETIME_MS;
    await client.respond(hooks.issue(), undefined, 'another');
    // Forgotten, it is counted afresh from now (the stand-in's own clock has not moved).
    await client.respond(b2, undefined, 'again');
    expect(hooks.postsTo(b2).map((post) => post.status)).toEqual([200, 200]);
  });

  it('past its bound forgets the URL least recently used, not the first one counted', async () => {
    const small = new ResponseUrls({
      prefix: hooks.prefix,
      timeoutMs: 2000,
      logger: createLogger('error', () => undefined),
      metrics: createSlackApiMetrics(new Registry()),
      now: () => clock,
      maxUrls: 2,
    });
    const [a, b, c] = [hooks.issue(), hooks.issue(), hooks.issue()];
    await small.respond(a, undefined, 'a1');
    await small.respond(b, undefined, 'b');
    for (let use = 2; use <= 5; use += 1) await small.respond(a, undefined, `a${use}`);
    // c makes three: b, used least recently, is forgotten; a is still counted.
    await small.respond(c, undefined, 'c');
    await expect(small.respond(a, undefined, 'a6')).rejects.toEqual(
      new SlackRespondRefusedError('uses_spent'),
    );
    expect(hooks.postsTo(a)).toHaveLength(5);
    small.close();
  });

  it('closes its keep-alive sockets on close()', async () => {
    // A stand-in of its own: the shared one may still hold other tests' idle sockets (when close()
    // does nothing, afterEach's does nothing either), and waiting for those to time out would
    // leave this test's socket only the last second of its own 4 s to time out by itself.
    const own = await startHooksStandIn();
    try {
      const alone = new ResponseUrls({
        prefix: own.prefix,
        timeoutMs: 2000,
        logger: createLogger('error', () => undefined),
        metrics: createSlackApiMetrics(new Registry()),
      });
      await alone.respond(own.issue(), undefined, 'x');
      await eventually(() => own.connections() === 1);
      alone.close();
      // The agent drops an idle socket by itself after 4 s: within 3 s, only close() does it.
      await eventually(() => own.connections() === 0, 3000);
      // Closed, it posts again, on a new connection.
      await alone.respond(own.issue(), undefined, 'again');
      expect(own.posts.map((post) => post.status)).toEqual([200, 200]);
      alone.close();
    } finally {
      await own.close();
    }
  });

  it('gives Slack’s refusal its code: a URL Slack has used up, an unknown one', async () => {
    const url = hooks.issue();
    // Five uses by another process: Slack refuses the sixth, whatever this one counted.
    const other = new ResponseUrls({
      prefix: hooks.prefix,
      timeoutMs: 2000,
      logger: createLogger('error', () => undefined),
      metrics: createSlackApiMetrics(new Registry()),
    });
    for (let use = 1; use <= 5; use += 1) await other.respond(url, undefined, 'elsewhere');
    other.close();
    await expect(client.respond(url, clock, 'sixth')).rejects.toEqual(
      new SlackApiError('response_url', 'used_url'),
    );
    await expect(client.respond(`${hooks.prefix}actions/none`, clock, 'x')).rejects.toEqual(
      new SlackApiError('response_url', 'invalid_url'),
    );
    hooks.answer({ status: 502, body: '<html>bad gateway</html>', times: 1 });
    await expect(client.respond(hooks.issue(), clock, 'x')).rejects.toEqual(
      new SlackApiError('response_url', 'http_502'),
    );
    hooks.answer({ status: 400, body: '{"ok":false,"error":"invalid_blocks"}', times: 1 });
    await expect(client.respond(hooks.issue(), clock, 'x')).rejects.toEqual(
      new SlackApiError('response_url', 'invalid_blocks'),
    );
    // A code is a whole answer of snake_case, surrounding blanks aside; a 3xx is no success.
    for (const [status, body, code] of [
      [404, '  used_url\n', 'used_url'],
      [502, 'upstream error: 502', 'http_502'],
      [502, 'bad_gateway from proxy', 'http_502'],
      [300, '', 'http_300'],
      [400, '{"ok":false,"error":7}', 'http_400'],
      [400, '{"ok":false,"error":"Bad Blocks"}', 'http_400'],
    ] as const) {
      hooks.answer({ status, body, times: 1 });
      await expect(client.respond(hooks.issue(), clock, 'x')).rejects.toEqual(
        new SlackApiError('response_url', code),
      );
    }
    expect(await count('slack_error')).toBe(10);
  });

  it('a 429 rejects at once with Slack’s Retry-After (60 s when unusable)', async () => {
    hooks.answer({ status: 429, headers: { 'retry-after': '7' }, times: 1 });
    await expect(client.respond(hooks.issue(), clock, 'x')).rejects.toEqual(
      new SlackRateLimitedError('response_url', 7),
    );
    for (const unusable of ['soon', '0', '-3']) {
      hooks.answer({ status: 429, headers: { 'retry-after': unusable }, times: 1 });
      await expect(client.respond(hooks.issue(), clock, 'x')).rejects.toEqual(
        new SlackRateLimitedError('response_url', 60),
      );
    }
    expect(await count('rate_limited')).toBe(4);
  });

  it('times each post in seconds', async () => {
    hooks.answer({ status: 200, body: 'ok', delayMs: 300, times: 1 });
    await client.respond(hooks.issue(), clock, 'x');
    const text = await registry.metrics();
    const seconds = metricValue(text, 'coffeebuddy_slack_api_duration_seconds_sum', {
      method: 'response_url',
    });
    // At least the stand-in's delay; far less than a minute, whatever the machine's load.
    expect(seconds).toBeGreaterThanOrEqual(0.3);
    expect(seconds).toBeLessThan(60);
  });

  it('gives up at its timeout or the caller’s signal: a network error', async () => {
    const quick = new ResponseUrls({
      prefix: hooks.prefix,
      timeoutMs: 100,
      logger: createLogger('error', () => undefined),
      metrics: createSlackApiMetrics(new Registry()),
    });
    hooks.answer({ status: 200, body: 'ok', delayMs: 1000, times: 1 });
    await expect(quick.respond(hooks.issue(), undefined, 'x')).rejects.toEqual(
      new SlackNetworkError('response_url', 'timeout after 100 ms'),
    );
    quick.close();
    hooks.answer({ status: 200, body: 'ok', delayMs: 1000, times: 1 });
    const controller = new AbortController();
    const pending = client.respond(hooks.issue(), clock, 'x', controller.signal);
    controller.abort();
    await expect(pending).rejects.toBeInstanceOf(SlackNetworkError);
    expect(await count('network_error')).toBe(1);
  });
});
