import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { CloudEvent, HTTP } from 'cloudevents';
import { SignJWT } from 'jose';
import request from 'supertest';
import { appHarness } from '../../testing/app';
import { startKubeIssuer, unsignedToken, type KubeIssuer } from '../../testing/kube-issuer';
import { metricValue } from '../../testing/metrics-text';
import { APP_PASSWORD, itWithPostgres, migratedCluster } from '../../testing/postgres';
import { serveFunction } from '../../testing/server';
import { SlackHandlers } from '../../lib/slack/handlers';

/**
 * The worker and dead-letter functions behind the image's pipeline with EVENTING_OIDC_AUDIENCE:
 * deliveries with the Trigger's token run; every forgery is refused 401 before its body is read,
 * leaves no row in slack_work on a real PostgreSQL, runs no handler, is counted by reason and
 * logged once without the token.
 */

const cluster = migratedCluster(['slack_work']);
const harness = appHarness();
const AUDIENCE = 'coffeebuddy-worker.coffeebuddy';
const SUBJECT = 'system:serviceaccount:coffeebuddy:oidc-trigger-coffeebuddy-worker';

let issuer: KubeIssuer;
let dir: string;

beforeEach(async () => {
  issuer = await startKubeIssuer();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'oidc-worker-'));
  fs.writeFileSync(path.join(dir, 'token'), issuer.readerToken);
});
afterEach(async () => {
  await issuer.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function recording() {
  const ran: string[] = [];
  const handlers = new SlackHandlers().onEvent('app_mention', (event) => {
    ran.push(event.text);
  });
  return { handlers, ran };
}

const app = (target: 'slackWorker' | 'slackDeadLetter', slackHandlers = new SlackHandlers()) =>
  harness({
    target,
    slackHandlers,
    env: {
      ...cluster()!.env({ PGPASSWORD: APP_PASSWORD }),
      EVENTING_OIDC_AUDIENCE: AUDIENCE,
      EVENTING_OIDC_ISSUER: issuer.url,
      EVENTING_OIDC_SUBJECTS: `${SUBJECT},system:serviceaccount:coffeebuddy:other`,
      EVENTING_OIDC_TOKEN_FILE: path.join(dir, 'token'),
      EVENTING_OIDC_CA_FILE: '',
    },
  });

function slackEvent(id: string, extensions: Record<string, string> = {}): CloudEvent<unknown> {
  return new CloudEvent({
    id,
    source: 'https://slack.com/teams/T0001',
    type: 'com.slack.event.app_mention',
    datacontenttype: 'application/json',
    data: { type: 'event_callback', event_id: id, event: { type: 'app_mention', text: id } },
    ...extensions,
  });
}

async function deliver(
  server: Parameters<typeof request>[0],
  event: CloudEvent<unknown>,
  authorization: string | undefined,
) {
  const message = HTTP.binary(event);
  let req = request(server)
    .post('/')
    .set(message.headers as Record<string, string>);
  if (authorization !== undefined) req = req.set('Authorization', authorization);
  return req.send(message.body as string);
}

const rows = () => cluster()!.admin('SELECT id, state FROM slack_work ORDER BY id', 'coffeebuddy');
const now = () => Math.floor(Date.now() / 1000);
const good = (claims: Record<string, unknown> = {}) =>
  issuer.sign({ aud: AUDIENCE, sub: SUBJECT, ...claims });

/** Each forgery, its Authorization header and the reason it is counted under. */
const FORGERIES: [string, () => Promise<string | undefined>, string][] = [
  ['no header', () => Promise.resolve(undefined), 'missing'],
  ['another scheme', async () => `Basic ${await good()}`, 'malformed'],
  [
    'another audience',
    async () => `Bearer ${await good({ aud: 'coffeebuddy-ingress' })}`,
    'wrong_audience',
  ],
  [
    'another subject',
    async () => `Bearer ${await good({ sub: 'system:serviceaccount:x:y' })}`,
    'wrong_subject',
  ],
  ['expired', async () => `Bearer ${await good({ exp: now() - 120 })}`, 'expired'],
  ['nbf in the future', async () => `Bearer ${await good({ nbf: now() + 120 })}`, 'not_yet_valid'],
  [
    'an unknown kid',
    async () =>
      `Bearer ${await issuer.sign({ aud: AUDIENCE, sub: SUBJECT }, { kid: await issuer.unpublishedKid() })}`,
    'unknown_key',
  ],
  [
    'alg: none',
    () =>
      Promise.resolve(
        `Bearer ${unsignedToken({ alg: 'none' }, { iss: issuer.url, aud: AUDIENCE, sub: SUBJECT, exp: now() + 600 })}`,
      ),
    'bad_algorithm',
  ],
  [
    'HS256 with the public key as secret',
    async () => {
      const kid = issuer.kids[0]!;
      const secret = new TextEncoder().encode(await issuer.publicKeyPem(kid));
      const token = await new SignJWT({ iss: issuer.url, aud: AUDIENCE, sub: SUBJECT })
        .setProtectedHeader({ alg: 'HS256', kid })
        .setExpirationTime('10m')
        .sign(secret);
      return `Bearer ${token}`;
    },
    'bad_algorithm',
  ],
  [
    'a tampered payload',
    async () => {
      const [header, payload, signature] = (await good()).split('.');
      const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString()) as object;
      const changed = Buffer.from(
        JSON.stringify({ ...claims, sub: 'system:serviceaccount:coffeebuddy:other', x: 1 }),
      ).toString('base64url');
      return `Bearer ${header}.${changed}.${signature}`;
    },
    'bad_signature',
  ],
];

describe('slackWorker with EVENTING_OIDC_AUDIENCE', () => {
  itWithPostgres('runs a delivery whose token the issuer signed for its audience', async () => {
    const { handlers, ran } = recording();
    const { server } = await app('slackWorker', handlers);
    const res = await deliver(server, slackEvent('EvGood'), `Bearer ${await good()}`);
    expect(res.status).toBe(204);
    expect(ran).toEqual(['EvGood']);
    expect(await rows()).toEqual([{ id: 'EvGood', state: 'done' }]);
  });

  for (const [what, header, reason] of FORGERIES) {
    itWithPostgres(
      `refuses ${what}: 401 before the body, no row, no handler, counted, logged without the token`,
      async () => {
        const { handlers, ran } = recording();
        const { server, logs } = await app('slackWorker', handlers);
        const authorization = await header();
        const res = await deliver(server, slackEvent('EvForged'), authorization);
        expect(res.status).toBe(401);
        expect(res.body).toEqual({ error: 'unauthenticated' });
        expect(res.headers['www-authenticate']).toBe('Bearer');
        expect(ran).toEqual([]);
        expect(await rows()).toEqual([]);
        const metrics = (await request(server).get('/metrics').expect(200)).text;
        expect(metricValue(metrics, 'coffeebuddy_event_auth_failures_total', { reason })).toBe(1);
        const warnings = logs.filter((line) => line.msg === 'event delivery not authenticated');
        expect(warnings).toEqual([expect.objectContaining({ function: 'slackWorker', reason })]);
        const token = authorization?.split(' ')[1];
        if (token !== undefined) {
          for (const part of token.split('.').filter((p) => p.length > 8)) {
            expect(JSON.stringify(logs)).not.toContain(part);
          }
        }
      },
    );
  }

  itWithPostgres(
    'answers a forgery whose body never comes: nothing of it is waited for',
    async () => {
      const { server } = await app('slackWorker');
      const { port } = server.address() as AddressInfo;
      const status = await new Promise<number>((resolve, reject) => {
        const req = http.request({
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: '/',
          headers: { 'Content-Type': 'application/json', 'Content-Length': '60000' },
        });
        req.on('response', (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
          req.destroy();
        });
        req.on('error', reject);
        req.flushHeaders();
      });
      expect(status).toBe(401);
    },
  );

  itWithPostgres(
    'answers 503 with Retry-After while the issuer’s keys cannot be read',
    async () => {
      const { handlers, ran } = recording();
      const { server } = await app('slackWorker', handlers);
      issuer.mode = 'fail503';
      const res = await deliver(server, slackEvent('EvLater'), `Bearer ${await good()}`);
      expect(res.status).toBe(503);
      expect(res.body).toEqual({ error: 'authentication unavailable' });
      expect(res.headers['retry-after']).toBe('10');
      expect(ran).toEqual([]);
      expect(await rows()).toEqual([]);
    },
  );
});

describe('served alone under functions-framework (--target) with EVENTING_OIDC_AUDIENCE', () => {
  itWithPostgres(
    'checks the sender the same way: forged refused, the Trigger’s taken',
    async () => {
      const { handlers, ran } = recording();
      const { app: built } = await app('slackWorker', handlers);
      const framework = serveFunction(built.functions.slackWorker!);
      const forged = await deliver(framework, slackEvent('EvAlone'), undefined);
      expect(forged.status).toBe(401);
      expect(forged.body).toEqual({ error: 'unauthenticated' });
      expect(await rows()).toEqual([]);
      const res = await deliver(framework, slackEvent('EvAlone'), `Bearer ${await good()}`);
      expect(res.status).toBe(204);
      expect(ran).toEqual(['EvAlone']);
    },
  );
});

describe('slackDeadLetter with EVENTING_OIDC_AUDIENCE', () => {
  itWithPostgres('records a dead letter with a token, refuses a forged one', async () => {
    const { server } = await app('slackDeadLetter');
    const dead = slackEvent('EvDead', { knativeerrorcode: '500', knativeerrordest: 'http://w' });
    expect((await deliver(server, dead, undefined)).status).toBe(401);
    expect(await rows()).toEqual([]);
    const forged = `Bearer ${await good({ aud: 'coffeebuddy-worker.other' })}`;
    expect((await deliver(server, dead, forged)).status).toBe(401);
    expect(await rows()).toEqual([]);
    expect((await deliver(server, dead, `Bearer ${await good()}`)).status).toBe(204);
    expect(await rows()).toEqual([{ id: 'EvDead', state: 'dead' }]);
  });
});
