import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SignJWT } from 'jose';
import { Registry } from 'prom-client';
import {
  AUTH_FAILURE_REASONS,
  createAuthFailureCounter,
  KEYS_TIMEOUT_MS,
  senderAuthentication,
  SenderIdentity,
  type SenderIdentityOptions,
} from '../../lib/eventing/sender-identity';
import { createLogger } from '../../lib/logger';
import { metricValue } from '../../testing/metrics-text';
import { startKubeIssuer, unsignedToken, type KubeIssuer } from '../../testing/kube-issuer';

/**
 * SenderIdentity against a stand-in of the Kubernetes API server's issuer: real tokens signed
 * with RS256 and ES256 keys made here, every kind of forgery, key rotation and the key reads.
 */

const AUDIENCE = 'coffeebuddy-worker';
const SUBJECT = 'system:serviceaccount:knative-eventing:oidc-trigger-worker';

let issuer: KubeIssuer;
let dir: string;
let tokenFile: string;

beforeEach(async () => {
  issuer = await startKubeIssuer();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sender-identity-'));
  tokenFile = path.join(dir, 'token');
  fs.writeFileSync(tokenFile, `${issuer.readerToken}\n`);
});
afterEach(async () => {
  await issuer.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function identity(options: Partial<SenderIdentityOptions> = {}): SenderIdentity {
  return new SenderIdentity({
    issuer: issuer.url,
    jwksUrl: '',
    tokenFile,
    caFile: '',
    httpsOnly: false,
    audience: AUDIENCE,
    subjects: [SUBJECT],
    ...options,
  });
}

const bearer = (token: string) => `Bearer ${token}`;
const good = (claims: Record<string, unknown> = {}, alg: 'RS256' | 'ES256' = 'RS256') =>
  issuer.sign({ aud: AUDIENCE, sub: SUBJECT, ...claims }, { alg });
const now = () => Math.floor(Date.now() / 1000);

describe('SenderIdentity', () => {
  it.each(['RS256', 'ES256'] as const)(
    'takes a %s token from the issuer for this audience and subject',
    async (alg) => {
      const verdict = await identity().verify(bearer(await good({}, alg)));
      expect(verdict).toEqual({ ok: true, subject: SUBJECT });
      // Discovery, then the key set, each with the pod's token.
      expect(issuer.requests).toEqual([
        { path: '/.well-known/openid-configuration', authorized: true },
        { path: '/openid/v1/jwks', authorized: true },
      ]);
    },
  );

  it('takes an audience among several, any subject when none are listed, and skew up to 60 s', async () => {
    const any = identity({ subjects: [] });
    const skewed = await good({
      aud: ['other', AUDIENCE],
      sub: 'system:serviceaccount:x:y',
      exp: now() - 50,
      nbf: now() + 50,
    });
    expect(await any.verify(bearer(skewed))).toEqual({
      ok: true,
      subject: 'system:serviceaccount:x:y',
    });
  });

  it('reads the key set from EVENTING_OIDC_JWKS_URL without discovery', async () => {
    const direct = identity({ jwksUrl: `${issuer.url}/openid/v1/jwks` });
    expect((await direct.verify(bearer(await good()))).ok).toBe(true);
    expect(issuer.requests.map((r) => r.path)).toEqual(['/openid/v1/jwks']);
  });

  describe('refuses', () => {
    const cases: [string, () => Promise<string | undefined>, string][] = [
      ['no header', () => Promise.resolve(undefined), 'missing'],
      ['an empty header', () => Promise.resolve(''), 'missing'],
      ['another scheme', async () => `Basic ${await good()}`, 'malformed'],
      ['a token that is not a JWT', () => Promise.resolve('Bearer abc'), 'malformed'],
      ['a header too long', async () => bearer(`${await good()}${'A'.repeat(9000)}`), 'malformed'],
      [
        'another audience',
        async () => bearer(await good({ aud: 'coffeebuddy-other' })),
        'wrong_audience',
      ],
      [
        'another subject',
        async () => bearer(await good({ sub: 'system:serviceaccount:x:y' })),
        'wrong_subject',
      ],
      [
        'another issuer',
        async () => bearer(await good({ iss: 'https://elsewhere' })),
        'wrong_issuer',
      ],
      ['an expired token', async () => bearer(await good({ exp: now() - 61 })), 'expired'],
      [
        'a token not yet valid',
        // Well past the 60 s tolerance: a loaded machine may take seconds between signing and checking.
        async () => bearer(await good({ nbf: now() + 3600 })),
        'not_yet_valid',
      ],
      ['a token without exp', async () => bearer(await good({ exp: undefined })), 'malformed'],
      ['a token without sub', async () => bearer(await good({ sub: undefined })), 'malformed'],
      [
        'a token from a key the issuer does not publish',
        async () =>
          bearer(
            await issuer.sign(
              { aud: AUDIENCE, sub: SUBJECT },
              { kid: await issuer.unpublishedKid() },
            ),
          ),
        'unknown_key',
      ],
      [
        'alg: none',
        () =>
          Promise.resolve(
            bearer(
              unsignedToken(
                { alg: 'none', typ: 'JWT' },
                { iss: issuer.url, aud: AUDIENCE, sub: SUBJECT, exp: now() + 600 },
              ),
            ),
          ),
        'bad_algorithm',
      ],
      [
        'HS256 keyed with the issuer’s public key',
        async () => {
          const kid = issuer.kids[0]!;
          const secret = new TextEncoder().encode(await issuer.publicKeyPem(kid));
          const forged = await new SignJWT({ aud: AUDIENCE, sub: SUBJECT, iss: issuer.url })
            .setProtectedHeader({ alg: 'HS256', kid })
            .setExpirationTime('10m')
            .sign(secret);
          return bearer(forged);
        },
        'bad_algorithm',
      ],
      [
        'a tampered payload',
        async () => {
          const [header, , signature] = (await good({ sub: 'system:serviceaccount:x:y' })).split(
            '.',
          );
          const payload = Buffer.from(
            JSON.stringify({ iss: issuer.url, aud: AUDIENCE, sub: SUBJECT, exp: now() + 600 }),
          ).toString('base64url');
          return bearer(`${header}.${payload}.${signature}`);
        },
        'bad_signature',
      ],
    ];
    it.each(cases)('%s', async (_what, header, reason) => {
      const verdict = await identity().verify(await header());
      expect(verdict).toMatchObject({ ok: false, reason });
    });
  });

  it('takes a new kid after one more read of the keys, once the cooldown has passed', async () => {
    const cooldownMs = 200;
    const checker = identity({ keysCooldownMs: cooldownMs });
    expect((await checker.verify(bearer(await good()))).ok).toBe(true);
    expect(issuer.jwksFetches).toBe(1);
    const kid = await issuer.rotate('ES256');
    await new Promise((resolve) => setTimeout(resolve, cooldownMs + 50));
    const rotated = await issuer.sign({ aud: AUDIENCE, sub: SUBJECT }, { kid });
    expect(await checker.verify(bearer(rotated))).toEqual({ ok: true, subject: SUBJECT });
    expect(issuer.jwksFetches).toBe(2);
    // The old key still works, from the keys already held.
    expect((await checker.verify(bearer(await good()))).ok).toBe(true);
    expect(issuer.jwksFetches).toBe(2);
  });

  it('reads old keys again, and keeps them while the issuer cannot be read', async () => {
    const checker = identity({ keysCooldownMs: 50, keysMaxAgeMs: 100 });
    expect((await checker.verify(bearer(await good()))).ok).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect((await checker.verify(bearer(await good()))).ok).toBe(true);
    expect(issuer.jwksFetches).toBe(2);
    issuer.mode = 'fail503';
    await new Promise((resolve) => setTimeout(resolve, 150));
    const asked = issuer.requests.length;
    expect(await checker.verify(bearer(await good()))).toEqual({ ok: true, subject: SUBJECT });
    // The read was tried, failed, and the keys held were used.
    expect(issuer.requests.length).toBeGreaterThan(asked);
  });

  it('reads the keys no more than once per cooldown, however many unknown kids arrive', async () => {
    const checker = identity();
    expect((await checker.verify(bearer(await good()))).ok).toBe(true);
    const unknown = await issuer.unpublishedKid('ES256');
    const forged = await issuer.sign({ aud: AUDIENCE, sub: SUBJECT }, { kid: unknown });
    const verdicts = await Promise.all(
      Array.from({ length: 50 }, () => checker.verify(bearer(forged))),
    );
    expect(new Set(verdicts.map((v) => !v.ok && v.reason))).toEqual(new Set(['unknown_key']));
    expect(issuer.jwksFetches).toBe(1);
  });

  it.each([
    ['answers 503', 'fail503'],
    ['sends a key set over the size bound', 'huge'],
  ] as const)(
    'is keys_unavailable when the issuer %s, and does not ask again within the cooldown',
    async (_what, mode) => {
      issuer.mode = mode;
      const checker = identity();
      const first = await checker.verify(bearer(await good()));
      expect(first).toMatchObject({ ok: false, reason: 'keys_unavailable' });
      const asked = issuer.requests.length;
      issuer.mode = 'ok';
      expect(await checker.verify(bearer(await good()))).toEqual({
        ok: false,
        reason: 'keys_unavailable',
        detail: 'read less than a cooldown ago',
      });
      expect(issuer.requests.length).toBe(asked);
    },
  );

  it('is keys_unavailable when the issuer answers JSON that is no key set: not the sender’s fault', async () => {
    issuer.mode = 'notKeys';
    expect(await identity().verify(bearer(await good()))).toEqual({
      ok: false,
      reason: 'keys_unavailable',
      detail: 'JWKSInvalid',
    });
  });

  it('does not read keys younger than five minutes again, however long since the last read', async () => {
    // No cooldown: only the keys' age decides.
    const checker = identity({ keysCooldownMs: 0 });
    expect((await checker.verify(bearer(await good()))).ok).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect((await checker.verify(bearer(await good()))).ok).toBe(true);
    expect(issuer.jwksFetches).toBe(1);
  });

  it('is keys_unavailable, within its timeout, when the issuer never answers', async () => {
    issuer.mode = 'hang';
    const started = Date.now();
    const verdict = await identity().verify(bearer(await good()));
    expect(verdict).toMatchObject({ ok: false, reason: 'keys_unavailable' });
    // A generous ceiling: the timeout is the bound under test.
    expect(Date.now() - started).toBeLessThan(KEYS_TIMEOUT_MS * 10);
  });

  it('is keys_unavailable without the pod’s token: the issuer refuses the read', async () => {
    fs.writeFileSync(tokenFile, 'wrong-token');
    expect(await identity().verify(bearer(await good()))).toMatchObject({
      ok: false,
      reason: 'keys_unavailable',
      detail: expect.stringContaining('answered 401') as unknown,
    });
    expect(
      await identity({ tokenFile: path.join(dir, 'absent') }).verify(bearer(await good())),
    ).toMatchObject({
      ok: false,
      reason: 'keys_unavailable',
      detail: expect.stringContaining('ENOENT') as unknown,
    });
  });

  it('refuses an http key URL when only https is allowed (production)', async () => {
    const verdict = await identity({ httpsOnly: true }).verify(bearer(await good()));
    expect(verdict).toMatchObject({ ok: false, reason: 'keys_unavailable' });
    expect(issuer.requests).toEqual([]);
  });
});

describe('SenderIdentity, the header and the token', () => {
  /** A real token after the scheme and as many spaces as make the header `length` long. */
  const headerOfLength = async (length: number, scheme = 'Bearer') => {
    const token = await good({ padding: 'x'.repeat(5000) });
    const spaces = length - scheme.length - token.length;
    expect(spaces).toBeGreaterThan(1);
    return { token, header: `${scheme}${' '.repeat(spaces)}${token}` };
  };

  it('takes a header of up to 8192 characters, whatever the scheme’s case and spaces', async () => {
    const { token, header } = await headerOfLength(8192, 'bearer');
    expect(header).toHaveLength(8192);
    const checker = identity();
    expect(await checker.verify(header)).toEqual({ ok: true, subject: SUBJECT });
    expect(await checker.verify(`BEARER ${token}`)).toEqual({ ok: true, subject: SUBJECT });
  });

  it.each([
    ['a header one character too long', async () => (await headerOfLength(8193)).header],
    ['something before the scheme', async () => `xBearer ${await good()}`],
    ['no space after the scheme', async () => `Bearer${await good()}`],
    ['something after the token', async () => `Bearer ${await good()} x`],
    [
      'a token of two parts',
      async () => `Bearer ${(await good()).split('.').slice(0, 2).join('.')}`,
    ],
    ['a character outside base64url in the header part', async () => `Bearer =${await good()}`],
    [
      'a character outside base64url in the payload part',
      async () => {
        const [header, payload, signature] = (await good()).split('.');
        return `Bearer ${header}.${payload}=.${signature}`;
      },
    ],
    ['a character outside base64url in the signature', async () => `Bearer ${await good()}=`],
  ])('refuses %s as malformed, before reading any key', async (_what, header) => {
    expect(await identity().verify(await header())).toEqual({ ok: false, reason: 'malformed' });
    expect(issuer.requests).toEqual([]);
  });

  it('refuses a token whose header names a critical extension it does not know: bad_algorithm', async () => {
    const token = unsignedToken(
      { alg: 'RS256', kid: issuer.kids[0], typ: 'JWT', crit: ['zz'], zz: true },
      { iss: issuer.url, aud: AUDIENCE, sub: SUBJECT, exp: now() + 600 },
      'AAAA',
    );
    expect(await identity().verify(bearer(token))).toEqual({ ok: false, reason: 'bad_algorithm' });
  });

  it('refuses a token without kid that more than one key could have signed: unknown_key', async () => {
    await issuer.rotate('RS256');
    const token = await issuer.sign({ aud: AUDIENCE, sub: SUBJECT }, { withoutKid: true });
    expect(await identity().verify(bearer(token))).toEqual({ ok: false, reason: 'unknown_key' });
  });

  it.each([
    ['exp', { exp: 'tomorrow' }],
    ['nbf', { nbf: 'yesterday' }],
    ['iat', { iat: 'now' }],
  ])('refuses a token whose %s is not a number as malformed', async (_claim, claims) => {
    expect(await identity().verify(bearer(await good(claims)))).toEqual({
      ok: false,
      reason: 'malformed',
    });
  });

  it('says why the first read of the keys failed', async () => {
    issuer.mode = 'fail503';
    expect(await identity().verify(bearer(await good()))).toEqual({
      ok: false,
      reason: 'keys_unavailable',
      detail: `${issuer.url}/.well-known/openid-configuration: answered 503`,
    });
  });
});

describe('senderAuthentication', () => {
  const REFUSED = 'coffeebuddy_event_auth_failures_total';

  function authentication(options: Partial<SenderIdentityOptions> = {}) {
    const logs: Record<string, unknown>[] = [];
    const logger = createLogger('debug', (line) =>
      logs.push(JSON.parse(line) as Record<string, unknown>),
    );
    const registry = new Registry();
    const authenticate = senderAuthentication(identity(options), {
      name: 'slackWorker',
      logger,
      countFailure: createAuthFailureCounter(registry),
    });
    const refused = async (reason: string) =>
      metricValue(await registry.metrics(), REFUSED, { reason });
    const request = (authorization?: string) =>
      authenticate({ headers: authorization === undefined ? {} : { authorization } } as never);
    return { request, logs, refused };
  }

  it('lets a known sender on, counting and logging nothing', async () => {
    const auth = authentication();
    expect(await auth.request(bearer(await good()))).toBeUndefined();
    expect(auth.logs).toEqual([]);
    for (const reason of AUTH_FAILURE_REASONS) expect(await auth.refused(reason)).toBe(0);
  });

  it('refuses an unknown sender with 401 and WWW-Authenticate, counted and logged without the token', async () => {
    const auth = authentication();
    const token = await good({ sub: 'system:serviceaccount:x:y' });
    expect(await auth.request(bearer(token))).toEqual({
      status: 401,
      error: 'unauthenticated',
      headers: { 'WWW-Authenticate': 'Bearer' },
    });
    expect(await auth.request(undefined)).toEqual(await auth.request(''));
    expect(auth.logs).toMatchObject([
      {
        level: 'warn',
        msg: 'event delivery not authenticated',
        function: 'slackWorker',
        reason: 'wrong_subject',
        detail: 'system:serviceaccount:x:y',
      },
      { msg: 'event delivery not authenticated', function: 'slackWorker', reason: 'missing' },
      { msg: 'event delivery not authenticated', function: 'slackWorker', reason: 'missing' },
    ]);
    expect(auth.logs[1]).not.toHaveProperty('detail');
    expect(JSON.stringify(auth.logs)).not.toContain(token);
    expect([await auth.refused('wrong_subject'), await auth.refused('missing')]).toEqual([1, 2]);
    expect(await auth.refused('expired')).toBe(0);
  });

  it('answers 503 with Retry-After of the cooldown when the keys cannot be read: Knative retries it', async () => {
    issuer.mode = 'fail503';
    const auth = authentication();
    expect(await auth.request(bearer(await good()))).toEqual({
      status: 503,
      error: 'authentication unavailable',
      headers: { 'Retry-After': '10' },
    });
    expect(await auth.refused('keys_unavailable')).toBe(1);
  });
});
