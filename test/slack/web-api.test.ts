import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { buildVaultClient } from '../../lib/clients/vault';
import { loadSettings } from '../../lib/config/settings';
import { createLogger } from '../../lib/logger';
import {
  SlackApiError,
  SlackNetworkError,
  SlackRateLimitedError,
  type SlackClient,
} from '../../lib/slack/client';
import { createSlackApiMetrics, type SlackApiMetrics } from '../../lib/slack/api-metrics';
import { CachedSecret } from '../../lib/cached-secret';
import { buildSlackClient, WebApiSlackClient } from '../../lib/slack/web-api';
import { metricValue } from '../../testing/metrics-text';
import { startSlackApiStandIn, type SlackApiStandIn } from '../../testing/slack-api';
import { absentUrl, startVaultStandIn, type VaultStandIn } from '../../testing/standins';
import { eventually, findCommand, itWithCommand } from '../../testing/tools';

/** The real WebClient (@slack/web-api) against the Slack Web API stand-in, the token in Vault. */

const FIRST_TOKEN = 'xoxb-first-0a1b';
const ROTATED_TOKEN = 'xoxb-rotated-2c3d';
const VAULT_TOKEN = 'hvs.slack-client';
const TOKEN_PATH = 'coffeebuddy/slack-bot';

describe('the Slack Web API client', () => {
  let slack: SlackApiStandIn;
  let vault: VaultStandIn;
  let registry: Registry;
  let metrics: SlackApiMetrics;
  let lines: string[];
  const opened: SlackClient[] = [];

  beforeAll(async () => {
    slack = await startSlackApiStandIn();
    vault = await startVaultStandIn();
    vault.tokens.set(VAULT_TOKEN, Date.now() + 600_000);
  });
  beforeEach(() => {
    slack.reset();
    slack.tokens.clear();
    slack.tokens.add(FIRST_TOKEN);
    vault.secrets[TOKEN_PATH] = { bot_token: FIRST_TOKEN };
    registry = new Registry();
    metrics = createSlackApiMetrics(registry);
    lines = [];
  });
  afterEach(() => {
    for (const client of opened.splice(0)) client.close?.();
  });
  afterAll(() => Promise.all([slack.close(), vault.close()]));

  const client = (env: NodeJS.ProcessEnv = {}): SlackClient => {
    const settings = loadSettings({
      NODE_ENV: 'test',
      VAULT_ADDR: vault.url,
      VAULT_TOKEN,
      SLACK_BOT_TOKEN_VAULT_PATH: TOKEN_PATH,
      SLACK_API_URL: slack.url,
      ...env,
    });
    const logger = createLogger('debug', (line) => lines.push(line));
    const built = buildSlackClient(settings, {
      vault: buildVaultClient(settings),
      logger,
      metrics,
    });
    opened.push(built);
    return built;
  };
  const calls = async (method: string, outcome: string) =>
    metricValue(await registry.metrics(), 'coffeebuddy_slack_api_calls_total', { method, outcome });
  const logged = () => lines.map((line) => JSON.parse(line) as Record<string, unknown>);

  it('posts with the bot token from Vault as a Bearer header, objects JSON-encoded in a form', async () => {
    const blocks = [{ type: 'section', text: { type: 'mrkdwn', text: 'hello' } }];
    const result = await client().call('chat.postMessage', {
      channel: 'C1',
      text: 'hello',
      thread_ts: '1700000000.000100',
      blocks,
    });
    expect(result).toMatchObject({ ok: true, channel: 'C1' });
    expect(slack.calls).toEqual([
      {
        method: 'chat.postMessage',
        token: FIRST_TOKEN,
        args: {
          channel: 'C1',
          text: 'hello',
          thread_ts: '1700000000.000100',
          blocks: JSON.stringify(blocks),
        },
        contentType: 'application/x-www-form-urlencoded',
        status: 200,
      },
    ]);
    expect(await calls('chat.postMessage', 'ok')).toBe(1);
    expect(lines.join('\n')).not.toContain(FIRST_TOKEN);
  });

  it('registers chat.postMessage’s series at 0 when built, before any call', async () => {
    client();
    const text = await registry.metrics();
    for (const outcome of ['ok', 'rate_limited', 'slack_error', 'auth_error', 'network_error']) {
      expect(await calls('chat.postMessage', outcome)).toBe(0);
    }
    expect(
      metricValue(text, 'coffeebuddy_slack_api_duration_seconds_count', {
        method: 'chat.postMessage',
      }),
    ).toBe(0);
  });

  it('rejects ok:false with SlackApiError carrying Slack’s code, counted slack_error', async () => {
    slack.answer('chat.postMessage', { answer: { kind: 'error', error: 'channel_not_found' } });
    const error = await client()
      .call('chat.postMessage', { channel: 'C9', text: 'x' })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SlackApiError);
    expect(error).toMatchObject({ method: 'chat.postMessage', code: 'channel_not_found' });
    expect(String(error)).toBe('SlackApiError: chat.postMessage failed: channel_not_found');
    expect(slack.calls).toHaveLength(1);
    expect(await calls('chat.postMessage', 'slack_error')).toBe(1);
  });

  it('rejects a 429 at once with Retry-After (7 s), never retrying it, counted rate_limited', async () => {
    slack.rateLimit('chat.postMessage', 1, 7);
    const error = await client()
      .call('chat.postMessage', { channel: 'C1', text: 'x' })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SlackRateLimitedError);
    expect(error).toMatchObject({ method: 'chat.postMessage', retryAfterSeconds: 7 });
    expect(String(error)).toBe(
      'SlackRateLimitedError: chat.postMessage rate limited: retry after 7 s',
    );
    expect(slack.calls.map((c) => c.status)).toEqual([429]);
    expect(await calls('chat.postMessage', 'rate_limited')).toBe(1);
  });

  it('takes a 429 with no usable Retry-After as a rate limit of a minute', async () => {
    slack.answer('chat.postMessage', { answer: { kind: 'rate_limited', retryAfter: 'soon' } });
    await expect(
      client().call('chat.postMessage', { channel: 'C1', text: 'x' }),
    ).rejects.toMatchObject({ name: 'SlackRateLimitedError', retryAfterSeconds: 60 });
    expect(slack.calls).toHaveLength(1);
  });

  it('tries a refused connection once more, then rejects SlackNetworkError, counted network_error', async () => {
    const refusing = client({ SLACK_API_URL: `${await absentUrl()}/api/` });
    const error = await refusing
      .call('chat.postMessage', { channel: 'C1', text: 'x' })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SlackNetworkError);
    expect(String(error)).toBe(
      'SlackNetworkError: chat.postMessage got no answer: connection refused',
    );
    // WebClient warns once per failed attempt: the first and the one retry.
    expect(logged().filter((l) => l.msg === 'http request failed')).toEqual([
      expect.objectContaining({ level: 'warn', source: '@slack/web-api' }),
      expect.objectContaining({ level: 'warn', source: '@slack/web-api' }),
    ]);
    expect(await calls('chat.postMessage', 'network_error')).toBe(1);
  });

  it('tries a reset connection once more, and succeeds when the second attempt is answered', async () => {
    slack.answer('chat.postMessage', { answer: { kind: 'reset' }, times: 1 });
    await expect(
      client().call('chat.postMessage', { channel: 'C1', text: 'x' }),
    ).resolves.toMatchObject({ ok: true });
    expect(slack.calls.map((c) => c.status)).toEqual([0, 200]);
  });

  it('retries a reset connection as well for a call with a signal not yet aborted (a handler’s deadline)', async () => {
    slack.answer('chat.postMessage', { answer: { kind: 'reset' }, times: 1 });
    const deadline = new AbortController();
    await expect(
      client().call('chat.postMessage', { channel: 'C1', text: 'x' }, { signal: deadline.signal }),
    ).resolves.toMatchObject({ ok: true });
    expect(slack.calls.map((c) => c.status)).toEqual([0, 200]);
  });

  it('sends nothing once closed: a retry pending at close() never reaches Slack', async () => {
    slack.answer('chat.postMessage', { answer: { kind: 'reset' }, times: 1 });
    const bot = client();
    const pending = bot.call('chat.postMessage', { channel: 'C1', text: 'x' });
    // The reset is answered; the one retry waits its 100 ms, and the client closes meanwhile.
    await eventually(() => slack.calls.length === 1, 5000);
    bot.close?.();
    await expect(pending).rejects.toBeInstanceOf(SlackNetworkError);
    // A call after close() is refused before anything is sent (no timeout: nothing was tried).
    await expect(
      bot.call('chat.postMessage', { channel: 'C1', text: 'after close' }),
    ).rejects.toThrow('chat.postMessage got no answer: request failed');
    expect(slack.calls.map((c) => c.status)).toEqual([0]);
  });

  it('does not retry a request that timed out (Slack may have acted on it)', async () => {
    slack.answer('chat.postMessage', { answer: { kind: 'ok' }, delayMs: 60_000 });
    const error = await client({ SLACK_API_TIMEOUT_MS: '200' })
      .call('chat.postMessage', { channel: 'C1', text: 'x' })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SlackNetworkError);
    expect((error as Error).message).toBe('chat.postMessage got no answer: timeout after 200 ms');
    expect(slack.calls).toHaveLength(1);
  });

  it('rejects an HTTP error status as SlackApiError http_<status>, not retried, no body in it', async () => {
    slack.answer('chat.postMessage', {
      answer: { kind: 'status', status: 503, body: '<html>secret-ish page</html>' },
    });
    const error = await client()
      .call('chat.postMessage', { channel: 'C1', text: 'x' })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'SlackApiError', code: 'http_503' });
    expect(slack.calls).toHaveLength(1);
    expect(JSON.stringify(error) + String(error)).not.toContain('secret-ish');
  });

  it('names an answer that is not Slack’s JSON invalid_response, without its text', async () => {
    slack.answer('chat.postMessage', {
      answer: { kind: 'status', status: 200, body: '<html>proxy login</html>' },
    });
    await expect(
      client().call('chat.postMessage', { channel: 'C1', text: 'x' }),
    ).rejects.toMatchObject({ name: 'SlackApiError', code: 'invalid_response' });
  });

  it('reads the token again once when Slack refuses it, and retries with the rotated one', async () => {
    const bot = client();
    await bot.call('chat.postMessage', { channel: 'C1', text: 'before' });
    // The token is rotated: Vault holds the new one, Slack accepts only it.
    vault.secrets[TOKEN_PATH] = { bot_token: ROTATED_TOKEN };
    slack.tokens.clear();
    slack.tokens.add(ROTATED_TOKEN);
    await expect(
      bot.call('chat.postMessage', { channel: 'C1', text: 'after' }),
    ).resolves.toMatchObject({ ok: true });
    expect(slack.calls.map((c) => [c.token, c.args.text])).toEqual([
      [FIRST_TOKEN, 'before'],
      [FIRST_TOKEN, 'after'],
      [ROTATED_TOKEN, 'after'],
    ]);
    const warnings = logged().filter((l) => l.level === 'warn');
    expect(warnings).toEqual([
      expect.objectContaining({
        msg: 'Slack refused the bot token; using the one read again',
        method: 'chat.postMessage',
        error: 'invalid_auth',
      }),
    ]);
    const everything = lines.join('\n');
    expect(everything).not.toContain(FIRST_TOKEN);
    expect(everything).not.toContain(ROTATED_TOKEN);
    expect(await calls('chat.postMessage', 'ok')).toBe(2);
    expect(await calls('chat.postMessage', 'auth_error')).toBe(0);
  });

  it('rejects invalid_auth, counted auth_error, when the token read again is the same', async () => {
    slack.tokens.clear();
    const error = await client()
      .call('chat.postMessage', { channel: 'C1', text: 'x' })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'SlackApiError', code: 'invalid_auth' });
    expect(String(error)).not.toContain(FIRST_TOKEN);
    expect(slack.calls).toHaveLength(1);
    expect(await calls('chat.postMessage', 'auth_error')).toBe(1);
    expect(logged().filter((l) => l.level === 'warn')).toEqual([]);
  });

  it.each(['not_authed', 'token_revoked', 'token_expired'])(
    'reads the token again on %s as on invalid_auth, and retries with the rotated one',
    async (code) => {
      const bot = client();
      await bot.call('auth.test', {});
      vault.secrets[TOKEN_PATH] = { bot_token: ROTATED_TOKEN };
      slack.tokens.add(ROTATED_TOKEN);
      slack.answer('chat.postMessage', { answer: { kind: 'error', error: code }, times: 1 });
      await expect(
        bot.call('chat.postMessage', { channel: 'C1', text: 'x' }),
      ).resolves.toMatchObject({ ok: true });
      expect(slack.callsOf('chat.postMessage').map((c) => c.token)).toEqual([
        FIRST_TOKEN,
        ROTATED_TOKEN,
      ]);
    },
  );

  it('counts a token problem Slack has no new token for as auth_error, without reading it again', async () => {
    const bot = client();
    await bot.call('auth.test', {});
    const reads = vault.secretReads;
    slack.answer('chat.postMessage', { answer: { kind: 'error', error: 'account_inactive' } });
    await expect(bot.call('chat.postMessage', { channel: 'C1', text: 'x' })).rejects.toMatchObject({
      code: 'account_inactive',
    });
    expect(vault.secretReads).toBe(reads);
    expect(slack.callsOf('chat.postMessage')).toHaveLength(1);
    expect(await calls('chat.postMessage', 'auth_error')).toBe(1);

    const missing = client({ SLACK_BOT_TOKEN_VAULT_PATH: 'coffeebuddy/missing' });
    await expect(missing.call('auth.test', {})).rejects.toMatchObject({
      code: 'token_unavailable',
    });
    expect(await calls('auth.test', 'auth_error')).toBe(1);
  });

  it('never reads the token again for a failure that is not a refusal of it', async () => {
    const bot = client();
    await bot.call('auth.test', {});
    const reads = vault.secretReads;
    slack.answer('chat.postMessage', { answer: { kind: 'reset' } });
    await expect(bot.call('chat.postMessage', { channel: 'C1', text: 'x' })).rejects.toBeInstanceOf(
      SlackNetworkError,
    );
    slack.rateLimit('auth.test', 1, 3);
    await expect(bot.call('auth.test', {})).rejects.toBeInstanceOf(SlackRateLimitedError);
    expect(vault.secretReads).toBe(reads);
  });

  it('takes Slack’s error code only as snake_case words of at most 64 characters', async () => {
    const bot = client();
    const code = async (error: string) => {
      slack.answer('chat.postMessage', { answer: { kind: 'error', error }, times: 1 });
      const rejected = await bot.call('chat.postMessage', { channel: 'C1', text: 'x' }).then(
        () => undefined,
        (e: unknown) => (e as SlackApiError).code,
      );
      return rejected;
    };
    expect(await code('a'.repeat(64))).toBe('a'.repeat(64));
    expect(await code('is_archived2')).toBe('is_archived2');
    for (const bad of ['a'.repeat(65), 'Not Found', 'x<script>', 'channel_not_found\nX', '']) {
      expect(await code(bad)).toBe('invalid_response');
    }
  });

  it('times each call in seconds', async () => {
    slack.answer('auth.test', { answer: { kind: 'ok' }, delayMs: 300, times: 1 });
    await client().call('auth.test', {});
    const seconds = metricValue(
      await registry.metrics(),
      'coffeebuddy_slack_api_duration_seconds_sum',
      { method: 'auth.test' },
    );
    // At least the stand-in's delay; far less than a minute, whatever the machine's load.
    expect(seconds).toBeGreaterThanOrEqual(0.3);
    expect(seconds).toBeLessThan(60);
  });

  it('reads the token again at each refusal a TTL apart, saying so each time', async () => {
    let now = 0;
    let stored = FIRST_TOKEN;
    const bot = new WebApiSlackClient({
      apiUrl: slack.url,
      token: new CachedSecret({
        load: () => Promise.resolve(stored),
        ttlMs: 60_000,
        staleMs: 0,
        now: () => now,
      }),
      timeoutMs: 5000,
      logger: createLogger('debug', (line) => lines.push(line)),
      metrics,
    });
    opened.push(bot);
    const rotate = (token: string) => {
      stored = token;
      slack.tokens.clear();
      slack.tokens.add(token);
    };
    await bot.call('auth.test', {});
    now = 1000;
    rotate(ROTATED_TOKEN);
    await expect(bot.call('auth.test', {})).resolves.toMatchObject({ ok: true });
    // A TTL after the forced read: the token is read again as usual, then rotated once more.
    now = 61_000;
    await bot.call('auth.test', {});
    now = 62_000;
    rotate('xoxb-third-4e5f');
    await expect(bot.call('auth.test', {})).resolves.toMatchObject({ ok: true });
    expect(slack.calls.map((c) => c.token)).toEqual([
      FIRST_TOKEN,
      FIRST_TOKEN,
      ROTATED_TOKEN,
      ROTATED_TOKEN,
      ROTATED_TOKEN,
      'xoxb-third-4e5f',
    ]);
    expect(logged().filter((l) => l.level === 'warn')).toHaveLength(2);
  });

  it('says Slack’s response warnings and errors as warnings of its own', async () => {
    slack.answer('auth.test', {
      answer: {
        kind: 'ok',
        fields: {
          response_metadata: { messages: ['[WARN] a deprecated argument', '[ERROR] a bad one'] },
        },
      },
    });
    await client().call('auth.test', {});
    expect(logged().filter((l) => l.source === '@slack/web-api')).toEqual([
      expect.objectContaining({ level: 'warn', msg: 'a deprecated argument' }),
      expect.objectContaining({ level: 'warn', msg: 'a bad one' }),
    ]);
  });

  it('refuses an answer over 4 MiB as a network error, reading no more of it', async () => {
    slack.answer('auth.test', {
      answer: { kind: 'ok', fields: { padding: 'x'.repeat(4 * 1024 * 1024) } },
    });
    await expect(client().call('auth.test', {})).rejects.toThrow(
      'auth.test got no answer: response too large',
    );
  });

  it('concurrent refusals share one read of the token and each retries with the new one', async () => {
    const bot = client();
    await bot.call('auth.test', {});
    vault.secrets[TOKEN_PATH] = { bot_token: ROTATED_TOKEN };
    slack.tokens.clear();
    slack.tokens.add(ROTATED_TOKEN);
    const reads = vault.secretReads;
    const results = await Promise.all(
      [1, 2, 3].map((n) => bot.call('chat.postMessage', { channel: 'C1', text: String(n) })),
    );
    expect(results.map((r) => r.ok)).toEqual([true, true, true]);
    expect(vault.secretReads - reads).toBe(1);
    expect(slack.callsOf('chat.postMessage').filter((c) => c.token === ROTATED_TOKEN)).toHaveLength(
      3,
    );
  });

  it('takes SLACK_BOT_TOKEN outside production, without Vault', async () => {
    const bot = client({
      SLACK_BOT_TOKEN_VAULT_PATH: '',
      VAULT_TOKEN: '',
      SLACK_BOT_TOKEN: FIRST_TOKEN,
    });
    await expect(bot.call('auth.test', {})).resolves.toEqual({ ok: true, response_metadata: {} });
    expect(slack.calls[0]!.token).toBe(FIRST_TOKEN);
  });

  it('with no token configured, rejects not_configured without calling Slack', async () => {
    const bot = client({ SLACK_BOT_TOKEN_VAULT_PATH: '' });
    await expect(bot.call('chat.postMessage', { channel: 'C1', text: 'x' })).rejects.toMatchObject({
      name: 'SlackApiError',
      code: 'not_configured',
    });
    expect(slack.calls).toEqual([]);
    expect(await calls('chat.postMessage', 'auth_error')).toBe(1);
  });

  it('rejects token_unavailable when Vault cannot give the token', async () => {
    const bot = client({ SLACK_BOT_TOKEN_VAULT_PATH: 'coffeebuddy/missing' });
    await expect(bot.call('chat.postMessage', { channel: 'C1', text: 'x' })).rejects.toMatchObject({
      code: 'token_unavailable',
    });
    expect(slack.calls).toEqual([]);
  });

  it('gives up a call when its signal aborts, the others going on, counted network_error', async () => {
    slack.answer('chat.postMessage', { answer: { kind: 'ok' }, delayMs: 60_000, times: 1 });
    slack.answer('chat.postMessage', { answer: { kind: 'ok' }, delayMs: 100, times: 1 });
    const bot = client({ SLACK_API_TIMEOUT_MS: '60000' });
    const controller = new AbortController();
    const slow = bot
      .call('chat.postMessage', { channel: 'C1', text: 'slow' }, { signal: controller.signal })
      .catch((e: unknown) => e);
    const other = bot.call(
      'chat.postMessage',
      { channel: 'C1', text: 'other' },
      {
        signal: new AbortController().signal,
      },
    );
    await eventually(() => slack.calls.length === 2);
    controller.abort(new Error('handler timeout'));
    const error = await slow;
    expect(error).toBeInstanceOf(SlackNetworkError);
    expect((error as Error).message).toBe('chat.postMessage got no answer: aborted by the caller');
    await expect(other).resolves.toMatchObject({ ok: true });
    expect(slack.calls).toHaveLength(2);
    expect(await calls('chat.postMessage', 'network_error')).toBe(1);
    expect(await calls('chat.postMessage', 'ok')).toBe(1);
  });

  it('sends nothing, and reads no token, with a signal already aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    const reads = vault.secretReads;
    await expect(
      client().call('chat.postMessage', { text: 'x' }, { signal: controller.signal }),
    ).rejects.toThrow('chat.postMessage got no answer: aborted by the caller');
    expect(slack.calls).toEqual([]);
    expect(vault.secretReads).toBe(reads);
  });

  it('refuses a caller’s mistakes before sending: no method name, a token, a file', async () => {
    const bot = client();
    await expect(bot.call('https://evil.example/api/x', {})).rejects.toThrow(
      new TypeError('a Slack call needs a Web API method name such as chat.postMessage'),
    );
    await expect(bot.call('chat.postMessage', { token: 'xoxb-other' })).rejects.toThrow(
      'the Slack client sends the bot token: pass none',
    );
    await expect(
      bot.call('files.upload', { channels: 'C1', file: Buffer.from('x') }),
    ).rejects.toThrow(new TypeError('the Slack client sends form bodies: no file uploads'));
    expect(slack.calls).toEqual([]);
  });

  it('counts each method under its own label', async () => {
    const bot = client();
    await bot.call('auth.test', {});
    await bot.call('conversations.info', { channel: 'C1' });
    expect(await calls('auth.test', 'ok')).toBe(1);
    expect(await calls('conversations.info', 'ok')).toBe(1);
    const text = await registry.metrics();
    expect(
      metricValue(text, 'coffeebuddy_slack_api_duration_seconds_count', { method: 'auth.test' }),
    ).toBe(1);
  });
});

/**
 * An https API URL is spoken to over TLS (the agent for it is https's): a server whose self-signed
 * certificate is not trusted gets a handshake, and the call fails on the certificate.
 */
describe('the Slack Web API client over https', () => {
  const itWithOpenssl = itWithCommand('openssl', 'apt-get install openssl');
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slack-api-tls-'));
    if (findCommand('openssl') === undefined) return;
    execFileSync(
      'openssl',
      [
        ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'],
        ...['-nodes', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')],
        ...['-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'],
      ],
      { stdio: 'ignore' },
    );
  });
  afterAll(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  itWithOpenssl('shakes hands, and refuses a certificate it does not trust', async () => {
    let handshakes = 0;
    let requests = 0;
    const server = https.createServer(
      {
        key: fs.readFileSync(path.join(dir, 'key.pem')),
        cert: fs.readFileSync(path.join(dir, 'cert.pem')),
      },
      (_req, res) => {
        requests += 1;
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
      },
    );
    server.on('tlsClientError', () => {
      handshakes += 1;
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const settings = loadSettings({
      NODE_ENV: 'test',
      SLACK_BOT_TOKEN: FIRST_TOKEN,
      SLACK_API_URL: `https://127.0.0.1:${port}/api/`,
    });
    const bot = buildSlackClient(settings, {
      vault: buildVaultClient(settings),
      logger: createLogger('error'),
      metrics: createSlackApiMetrics(new Registry()),
    });
    try {
      await expect(bot.call('auth.test', {})).rejects.toThrow(
        'auth.test got no answer: TLS certificate rejected (DEPTH_ZERO_SELF_SIGNED_CERT)',
      );
      await eventually(() => handshakes >= 1);
      expect(requests).toBe(0);
    } finally {
      bot.close?.();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
