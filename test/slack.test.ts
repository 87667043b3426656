import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { SlackHandlers } from '../lib/slack/handlers';
import { signSlackRequest } from '../lib/slack/signature';
import type { App } from '../functions/app';
import { appHarness, type HarnessOptions } from '../testing/app';
import { metricValue } from '../testing/metrics-text';
import { exchangeRaw } from '../testing/server';
import { eventually } from '../testing/tools';
import {
  startOryStandIn,
  startVaultStandIn,
  type OryStandIn,
  type VaultStandIn,
} from '../testing/standins';

const SECRET = 'test-signing-secret';
const NOW = 1_800_000_000;
const FORM = 'application/x-www-form-urlencoded';

const build = appHarness({
  env: { READINESS_TIMEOUT_MS: '300', SLACK_MAX_BODY_BYTES: '4096' },
  nowSeconds: () => NOW,
});

/** An app with subcommands that echo, take too long and fail, and handlers that record. */
async function harness(
  env: NodeJS.ProcessEnv = { SLACK_SIGNING_SECRET: SECRET },
  options: HarnessOptions = {},
) {
  const events: Record<string, unknown>[] = [];
  const interactions: Record<string, unknown>[] = [];
  const handlers = new SlackHandlers()
    .addSubcommand('echo', { description: 'say it back', run: (args) => `echo: ${args}` })
    .addSubcommand('slow', {
      description: 'takes too long',
      run: () =>
        new Promise((resolve) =>
          setTimeout(() => {
            resolve('late');
          }, 4000).unref(),
        ),
    })
    .addSubcommand('broken', {
      description: 'fails',
      run: () => {
        throw new Error('internal detail');
      },
    })
    .onEvent('app_mention', (event) => {
      events.push({ ...event });
    })
    .onAction('a', (_action, payload) => {
      interactions.push(payload);
    });
  const built = await build({ env, slackHandlers: handlers, ...options });
  return { ...built, registry: handlers, events, interactions };
}

function post(
  server: http.Server,
  path: string,
  body: string,
  type: string,
  sign: { secret?: string; timestamp?: number } | false = {},
) {
  let req = request(server).post(path).set('Content-Type', type);
  if (sign !== false) {
    const timestamp = String(sign.timestamp ?? NOW);
    req = req
      .set('X-Slack-Request-Timestamp', timestamp)
      .set('X-Slack-Signature', signSlackRequest(sign.secret ?? SECRET, timestamp, body));
  }
  return req.send(body);
}

const commandBody = (text: string, command = '/coffee') =>
  new URLSearchParams({
    command,
    text,
    user_id: 'U1',
    channel_id: 'C1',
    team_id: 'T1',
    response_url: 'https://hooks.slack.com/x',
  }).toString();
const eventBody = (id: string) =>
  JSON.stringify({
    type: 'event_callback',
    event_id: id,
    event: { type: 'app_mention', text: 'hi' },
  });
const interactionBody = (payload: unknown) =>
  new URLSearchParams({ payload: JSON.stringify(payload) }).toString();

async function slackCount(app: App, kind: string, outcome: string): Promise<number | undefined> {
  const text = await app.registry.metrics();
  return metricValue(text, 'coffeebuddy_slack_requests_total', { kind, outcome });
}

describe('POST /slack/commands', () => {
  it('answers /coffee help with an ephemeral list of what is available', async () => {
    const { server, app } = await harness();
    const res = await post(server, '/slack/commands', commandBody('help'), FORM).expect(200);
    expect(res.body.response_type).toBe('ephemeral');
    expect(res.body.text).toContain('`/coffee help`');
    expect(res.body.text).toContain('`/coffee echo`: say it back');
    expect(await slackCount(app, 'commands', 'ok')).toBe(1);
  });

  it('dispatches subcommands through the registry', async () => {
    const { server } = await harness();
    const res = await post(server, '/slack/commands', commandBody('echo hello there'), FORM).expect(
      200,
    );
    expect(res.body).toEqual({ response_type: 'ephemeral', text: 'echo: hello there' });
  });

  it('refuses a signed form without a command with 400, running nothing', async () => {
    const { server, app, logs } = await harness();
    const body = new URLSearchParams({ text: 'echo hello', user_id: 'U1' }).toString();
    const res = await post(server, '/slack/commands', body, FORM).expect(400);
    expect(res.body).toEqual({ error: 'invalid payload' });
    expect(await slackCount(app, 'commands', 'invalid_payload')).toBe(1);
    expect(await slackCount(app, 'commands', 'ok')).toBe(0);
    expect(logs.filter((line) => line.msg === 'slack request refused')).toEqual([
      expect.objectContaining({ kind: 'commands', outcome: 'invalid_payload', status: 400 }),
    ]);
  });

  it('reads help from the fields the whole form would give: names decoded, the first counting', async () => {
    const { server } = await harness();
    // `comm%61nd` is `command`, and the first of the two.
    const body = 'comm%61nd=%2Ftea&command=%2Fcoffee&te%78t=help';
    const res = await post(server, '/slack/commands', body, FORM).expect(200);
    expect(res.body.text).toBe('CoffeeBuddy does not know /tea. Try /coffee help.');
    const help = await post(server, '/slack/commands', 'text=+help+&command=%2Fcoffee', FORM);
    expect(help.body.text).toContain('`/coffee echo`: say it back');
    // Without a text, help; with an empty command, refused as a form without one.
    const bare = await post(server, '/slack/commands', 'command=%2Fcoffee', FORM).expect(200);
    expect(bare.body.text).toContain('`/coffee echo`: say it back');
    await post(server, '/slack/commands', 'command=&text=help', FORM).expect(400);
  });

  it('refuses help in a form of more fields than a form may have (413), as any other form', async () => {
    const { server, app } = await harness();
    const body = `${commandBody('help')}${'&'.repeat(995)}`; // 6 fields and 995 empty ones
    const res = await post(server, '/slack/commands', body, FORM).expect(413);
    expect(res.body).toEqual({ error: 'too many parameters' });
    expect(await slackCount(app, 'commands', 'invalid_payload')).toBe(1);
    await post(server, '/slack/commands', `${commandBody('help')}${'&'.repeat(994)}`, FORM).expect(
      200,
    );
  });

  it('answers before a slow subcommand finishes, saying it takes too long', async () => {
    const { server } = await harness();
    const res = await post(server, '/slack/commands', commandBody('slow'), FORM).expect(200);
    expect(res.body.text).toContain('longer than Slack waits');
  });

  it('answers a failing subcommand without its error, logs what broke, and counts it', async () => {
    const { server, app, logs } = await harness();
    const res = await post(server, '/slack/commands', commandBody('broken'), FORM).expect(200);
    expect(res.body.text).toBe('Sorry, something went wrong.');
    expect(JSON.stringify(res.body)).not.toContain('internal detail');
    expect(logs.filter((line) => line.msg === 'slack answer failed')).toEqual([
      expect.objectContaining({
        level: 'error',
        kind: 'commands',
        type: 'coffee',
        error: expect.objectContaining({ name: 'Error', message: 'internal detail' }),
      }),
    ]);
    expect(await slackCount(app, 'commands', 'handler_error')).toBe(1);
  });

  it('answers Slack’s unsigned ssl_check with an empty 200 and nothing else', async () => {
    const { server, app } = await harness();
    const res = await post(server, '/slack/commands', 'ssl_check=1&token=x', FORM, false).expect(
      200,
    );
    expect(res.text).toBe('');
    expect(await slackCount(app, 'commands', 'ssl_check')).toBe(1);
  });

  it('refuses a body over SLACK_MAX_BODY_BYTES with 413 before the Slack function sees it', async () => {
    const { server, app } = await harness();
    const res = await post(
      server,
      '/slack/commands',
      `text=${'x'.repeat(5000)}`,
      FORM,
      false,
    ).expect(413);
    expect(res.body).toEqual({ error: 'request too large' });
    const text = await app.registry.metrics();
    expect(text).toMatch(
      /^coffeebuddy_http_requests_total\{method="POST",route="\/slack\/commands",status="413"\} 1$/m,
    );
    // Refused by the pipeline from its Content-Length: no Slack outcome was reached.
    expect(text).not.toMatch(/^coffeebuddy_slack_requests_total\{[^}]*\} [1-9]/m);
  });
});

describe('refused requests', () => {
  it.each([
    ['missing headers', false as const, 'unsigned'],
    ['another secret', { secret: 'not-the-secret' }, 'bad_signature'],
    ['a stale timestamp', { timestamp: NOW - 301 }, 'stale'],
    ['a future timestamp', { timestamp: NOW + 301 }, 'stale'],
  ])(
    'answers %s with the same 401, counted and logged without body or secret',
    async (_name, sign, outcome) => {
      const { server, app, logs } = await harness();
      const body = commandBody('echo private words');
      const res = await post(server, '/slack/commands', body, FORM, sign).expect(401);
      expect(res.body).toEqual({ error: 'invalid request' });
      expect(await slackCount(app, 'commands', outcome)).toBe(1);
      expect(logs).toContainEqual(
        expect.objectContaining({
          level: 'warn',
          msg: 'slack request refused',
          kind: 'commands',
          outcome,
        }),
      );
      // A refusal with no reason of its own logs none.
      expect(logs.filter((line) => 'reason' in line)).toEqual([]);
      const logged = JSON.stringify(logs);
      expect(logged).not.toContain('private words');
      expect(logged).not.toContain(SECRET);
    },
  );

  it('refuses a body changed after signing', async () => {
    const { server } = await harness();
    const timestamp = String(NOW);
    await request(server)
      .post('/slack/commands')
      .set('Content-Type', FORM)
      .set('X-Slack-Request-Timestamp', timestamp)
      .set('X-Slack-Signature', signSlackRequest(SECRET, timestamp, commandBody('echo a')))
      .send(commandBody('echo b'))
      .expect(401);
  });

  it.each(['get', 'put', 'delete'] as const)(
    'answers %s with 405 and Allow: POST',
    async (method) => {
      const { server } = await harness();
      const res = await request(server)[method]('/slack/events').expect(405);
      expect(res.headers.allow).toBe('POST');
    },
  );

  it('answers 503 when no signing secret is configured', async () => {
    const { server } = await harness({});
    const res = await post(server, '/slack/events', eventBody('Ev1'), 'application/json').expect(
      503,
    );
    expect(res.body).toEqual({ error: 'slack is not configured' });
  });
});

describe('POST /slack/events', () => {
  it('answers url_verification with the challenge', async () => {
    const { server, app } = await harness();
    const body = JSON.stringify({ type: 'url_verification', token: 't', challenge: 'c-123' });
    const res = await post(server, '/slack/events', body, 'application/json').expect(200);
    expect(res.body).toEqual({ challenge: 'c-123' });
    expect(await slackCount(app, 'events', 'url_verification')).toBe(1);
  });

  it('acknowledges an event with an empty 200 and dispatches it', async () => {
    const { server, events } = await harness();
    const res = await post(server, '/slack/events', eventBody('Ev1'), 'application/json').expect(
      200,
    );
    expect(res.text).toBe('');
    await new Promise((resolve) => setImmediate(resolve));
    expect(events).toEqual([{ type: 'app_mention', text: 'hi' }]);
  });

  it('acknowledges a retry of an event already seen without dispatching it again', async () => {
    const { server, app, events } = await harness();
    await post(server, '/slack/events', eventBody('Ev2'), 'application/json').expect(200);
    const timestamp = String(NOW);
    await request(server)
      .post('/slack/events')
      .set('Content-Type', 'application/json')
      .set('X-Slack-Request-Timestamp', timestamp)
      .set('X-Slack-Signature', signSlackRequest(SECRET, timestamp, eventBody('Ev2')))
      .set('X-Slack-Retry-Num', '1')
      .set('X-Slack-Retry-Reason', 'http_timeout')
      .send(eventBody('Ev2'))
      .expect(200);
    await new Promise((resolve) => setImmediate(resolve));
    expect(events).toHaveLength(1);
    expect(await slackCount(app, 'events', 'retry_duplicate')).toBe(1);
  });

  it('answers an envelope it cannot read with 400', async () => {
    const { server } = await harness();
    await post(
      server,
      '/slack/events',
      JSON.stringify({ type: 'event_callback' }),
      'application/json',
    ).expect(400);
  });

  it('survives a failing event handler after the acknowledgement, serving the next event', async () => {
    const { server, registry, app } = await harness();
    registry.onEvent('app_mention', () => Promise.reject(new Error('boom')));
    await post(server, '/slack/events', eventBody('Ev3'), 'application/json').expect(200);
    await eventually(async () => (await slackCount(app, 'events', 'handler_error')) === 1);
    // Still acknowledging and dispatching: the next event reaches the handler too.
    await post(server, '/slack/events', eventBody('Ev4'), 'application/json').expect(200);
    await eventually(async () => (await slackCount(app, 'events', 'handler_error')) === 2);
  });

  it('runs handlers after the ack in the request’s context: their log lines carry its id', async () => {
    const { server, registry, app, logs } = await harness();
    registry.onEvent('app_mention', async () => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      app.logger.info('handled after the ack');
    });
    const res = await post(server, '/slack/events', eventBody('Ev5'), 'application/json')
      .set('X-Request-ID', 'event-request-1')
      .expect(200);
    expect(res.headers['x-request-id']).toBe('event-request-1');
    await eventually(() => logs.some((l) => l.msg === 'handled after the ack'));
    expect(logs.find((l) => l.msg === 'handled after the ack')).toMatchObject({
      requestId: 'event-request-1',
    });
  });

  it('answers 503 beyond SLACK_MAX_PENDING_WORK, without remembering the event', async () => {
    const { server, registry, app } = await harness({
      SLACK_SIGNING_SECRET: SECRET,
      SLACK_MAX_PENDING_WORK: '2',
    });
    const releases: (() => void)[] = [];
    registry.onEvent('app_mention', () => new Promise<void>((resolve) => releases.push(resolve)));
    for (const id of ['EvA', 'EvB']) {
      await post(server, '/slack/events', eventBody(id), 'application/json').expect(200);
    }
    const busy = await post(server, '/slack/events', eventBody('EvC'), 'application/json');
    expect([busy.status, busy.body]).toEqual([503, { error: 'busy' }]);
    expect(await slackCount(app, 'events', 'overloaded')).toBe(1);
    for (const release of releases.splice(0)) release();
    await eventually(() => app.lifecycle.inFlight().work === 0);
    // Slack delivers it again later: now it is handled, not taken for a duplicate.
    await post(server, '/slack/events', eventBody('EvC'), 'application/json').expect(200);
    expect(await slackCount(app, 'events', 'ok')).toBe(3);
    for (const release of releases.splice(0)) release();
  });

  it('tracks handlers after the ack as work in flight, so that shutdown waits for them', async () => {
    const { server, registry, app } = await harness();
    let release!: () => void;
    registry.onEvent('app_mention', () => new Promise<void>((resolve) => (release = resolve)));
    await post(server, '/slack/events', eventBody('Ev4'), 'application/json').expect(200);
    await eventually(() => app.lifecycle.inFlight().work === 1);
    release();
    await eventually(() => app.lifecycle.inFlight().work === 0);
  });
});

describe('a verified body’s media type and shape', () => {
  it.each([
    ['/slack/commands', 'Application/X-WWW-Form-URLEncoded; Charset="UTF-8"'],
    ['/slack/commands', 'application/x-www-form-urlencoded ; charset = utf-8'],
    ['/slack/events', 'application/json; charset=utf-8'],
    ['/slack/events', 'APPLICATION/JSON'],
  ])('%s takes %j', async (path, type) => {
    const { server } = await harness();
    const body = path === '/slack/events' ? eventBody('EvType') : commandBody('echo hi');
    const res = await post(server, path, body, type).expect(200);
    if (path === '/slack/commands') expect(res.body.text).toBe('echo: hi');
  });

  it.each([
    ['/slack/commands', 'application/json'],
    ['/slack/commands', 'text/plain'],
    ['/slack/commands', 'application/x-www-form-urlencoded; charset=iso-8859-1'],
    ['/slack/commands', 'application/x-www-form-urlencoded;charset="iso-8859-1"'],
    ['/slack/commands', 'application/x-www-form-urlencoded;  charset  =  iso-8859-1'],
    ['/slack/events', 'application/x-www-form-urlencoded'],
    ['/slack/events', 'application/json; charset="utf-16"'],
  ])('%s refuses %j with 415', async (path, type) => {
    const { server, app } = await harness();
    const kind = path.slice('/slack/'.length);
    const body = kind === 'events' ? eventBody('EvType') : commandBody('echo hi');
    const res = await post(server, path, body, type).expect(415);
    expect(res.body).toEqual({ error: 'unsupported media type' });
    expect(await slackCount(app, kind, 'invalid_payload')).toBe(1);
  });

  it.each(['commands', 'events', 'interactions'])(
    '/slack/%s refuses a signed body without a Content-Type with 415',
    async (kind) => {
      const { server, app } = await harness();
      const body = kind === 'events' ? eventBody('EvType') : commandBody('echo hi');
      const timestamp = String(NOW);
      const answer = await exchangeRaw(
        (server.address() as AddressInfo).port,
        [
          `POST /slack/${kind} HTTP/1.1`,
          'Host: 127.0.0.1',
          `Content-Length: ${Buffer.byteLength(body)}`,
          `X-Slack-Request-Timestamp: ${timestamp}`,
          `X-Slack-Signature: ${signSlackRequest(SECRET, timestamp, body)}`,
          'Connection: close',
          '',
          body,
        ].join('\r\n'),
      );
      expect(answer).toMatch(/^HTTP\/1\.1 415 [^]*\{"error":"unsupported media type"\}$/);
      expect(await slackCount(app, kind, 'invalid_payload')).toBe(1);
    },
  );

  it.each([
    ['null', 'invalid payload'],
    ['[]', 'invalid payload'],
    ['"event"', 'invalid payload'],
    ['1', 'invalid payload'],
    ['{', 'malformed body'],
  ])('refuses an event body of %s with 400: no JSON object', async (body, error) => {
    const { server, app } = await harness();
    const res = await post(server, '/slack/events', body, 'application/json').expect(400);
    expect(res.body).toEqual({ error });
    expect(await slackCount(app, 'events', 'invalid_payload')).toBe(1);
  });
});

describe('POST /slack/interactions', () => {
  it('acknowledges and dispatches the JSON payload', async () => {
    const { server, interactions } = await harness();
    const payload = { type: 'block_actions', actions: [{ action_id: 'a' }] };
    const res = await post(server, '/slack/interactions', interactionBody(payload), FORM).expect(
      200,
    );
    expect(res.text).toBe('');
    await new Promise((resolve) => setImmediate(resolve));
    expect(interactions).toEqual([payload]);
  });

  it('answers a payload that is not JSON with 400', async () => {
    const { server, app } = await harness();
    await post(server, '/slack/interactions', 'payload=%7Bnot-json', FORM).expect(400);
    expect(await slackCount(app, 'interactions', 'invalid_payload')).toBe(1);
  });
});

describe('the slack function deployed alone', () => {
  it('serves the three Slack paths and nothing else', async () => {
    const { server } = await harness(undefined, { fn: 'slack' });
    await post(server, '/slack/commands', commandBody('help'), FORM).expect(200);
    await request(server).get('/health/live').expect(404);
  });
});

describe('the signing secret from Vault', () => {
  let vault: VaultStandIn;
  let ory: OryStandIn;

  beforeAll(async () => {
    vault = await startVaultStandIn();
    ory = await startOryStandIn();
  });
  afterAll(() => Promise.all([vault.close(), ory.close()]));

  function vaultHarness() {
    vault.tokens.set('hvs.test', Date.now() + 600_000);
    vault.secrets['coffeebuddy/slack'] = { signing_secret: 'from-vault-1' };
    return harness(
      {
        VAULT_ADDR: vault.url,
        ORY_URL: ory.url,
        VAULT_TOKEN: 'hvs.test',
        SLACK_SIGNING_SECRET_VAULT_PATH: 'coffeebuddy/slack',
      },
      { vaultClientFactory: undefined, oryClientFactory: undefined },
    );
  }

  it('verifies with the secret read from Vault, and picks up a rotation at once', async () => {
    const { server } = await vaultHarness();
    await post(server, '/slack/commands', commandBody('help'), FORM, {
      secret: 'from-vault-1',
    }).expect(200);
    vault.secrets['coffeebuddy/slack'] = { signing_secret: 'from-vault-2' };
    const reads = vault.secretReads;
    await post(server, '/slack/commands', commandBody('help'), FORM, {
      secret: 'from-vault-2',
    }).expect(200);
    expect(vault.secretReads).toBe(reads + 1);
    // Bad signatures cannot drive reads: one forced read per TTL.
    for (let i = 0; i < 5; i += 1) {
      await post(server, '/slack/commands', commandBody('help'), FORM, { secret: 'forged' }).expect(
        401,
      );
    }
    expect(vault.secretReads).toBe(reads + 1);
  });

  it('adds a slack component to readiness: unavailable while the secret cannot be read', async () => {
    const { server } = await vaultHarness();
    const ok = await request(server).get('/health/ready').expect(200);
    expect(ok.body.components.slack).toMatchObject({ status: 'ok' });
    delete vault.secrets['coffeebuddy/slack'];
    const { server: fresh, logs } = await vaultHarness();
    delete vault.secrets['coffeebuddy/slack'];
    const res = await request(fresh).get('/health/ready').expect(503);
    expect(res.body.detail.components.slack).toMatchObject({
      status: 'unavailable',
      error: 'cannot read the signing secret: no secret at secret/coffeebuddy/slack',
    });
    const refused = await post(fresh, '/slack/commands', commandBody('help'), FORM).expect(503);
    expect(refused.body).toEqual({ error: 'temporarily unavailable' });
    // Why, for whoever reads the log: what the secret's read said.
    expect(logs.filter((line) => line.msg === 'slack request refused')).toEqual([
      expect.objectContaining({
        level: 'warn',
        kind: 'commands',
        outcome: 'secret_unavailable',
        reason: expect.stringContaining('no secret at secret/coffeebuddy/slack'),
      }),
    ]);
  });

  it('has no slack component when Slack is not configured', async () => {
    const { server } = await harness({});
    const res = await request(server).get('/health/ready').expect(200);
    expect(Object.keys(res.body.components).sort()).toEqual(['ory', 'vault']);
  });
});
