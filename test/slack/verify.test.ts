import { UpstreamError } from '../../lib/errors';
import { signSlackRequest } from '../../lib/slack/signature';
import { SigningSecret } from '../../lib/slack/signing-secret';
import { SlackVerifier, type SlackRequest } from '../../lib/slack/verify';

const NOW = 1_800_000_000;
const body = Buffer.from('command=%2Fcoffee&text=help');

function signed(secret: string, overrides: Partial<SlackRequest> = {}): SlackRequest {
  const timestamp = String(NOW);
  return {
    kind: 'commands',
    timestamp,
    signature: signSlackRequest(secret, timestamp, body),
    body,
    contentType: 'application/x-www-form-urlencoded',
    ...overrides,
  };
}

const verifier = (secret: SigningSecret | undefined, maxBodyBytes = 1024) =>
  new SlackVerifier({ secret, maxBodyBytes, nowSeconds: () => NOW });
const secretFrom = (load: () => Promise<string>) =>
  new SigningSecret({ load, ttlMs: 60_000, staleMs: 0 });
const fixed = (value: string) => secretFrom(() => Promise.resolve(value));

describe('SlackVerifier', () => {
  it('accepts a request signed with the secret', async () => {
    expect(await verifier(fixed('s')).verify(signed('s'))).toEqual({ accepted: true });
  });

  it.each<[string, Partial<SlackRequest>, string, number, string]>([
    ['no signature', { signature: undefined }, 'unsigned', 401, 'invalid request'],
    ['no timestamp', { timestamp: undefined }, 'unsigned', 401, 'invalid request'],
    [
      'another secret',
      { signature: signSlackRequest('x', String(NOW), body) },
      'bad_signature',
      401,
      'invalid request',
    ],
    ['a stale timestamp', { timestamp: String(NOW - 301) }, 'stale', 401, 'invalid request'],
    ['a body over the limit', { body: Buffer.alloc(1025) }, 'too_large', 413, 'request too large'],
  ])(
    'refuses %s, with the answer’s error and no reason',
    async (_name, overrides, outcome, status, error) => {
      const verdict = await verifier(fixed('s')).verify(signed('s', overrides));
      // Strict: a refusal without a reason has no `reason` key at all.
      expect(verdict).toStrictEqual({ accepted: false, outcome, status, error });
    },
  );

  it('takes a body of exactly maxBodyBytes', async () => {
    const v = new SlackVerifier({
      secret: fixed('s'),
      maxBodyBytes: body.length,
      nowSeconds: () => NOW,
    });
    expect(await v.verify(signed('s'))).toEqual({ accepted: true });
    const longer = Buffer.concat([body, Buffer.from('&x=1')]);
    const timestamp = String(NOW);
    const over = { body: longer, signature: signSlackRequest('s', timestamp, longer) };
    expect(await v.verify(signed('s', over))).toMatchObject({ outcome: 'too_large', status: 413 });
  });

  it('refuses a well-formed signature that differs from the right one in any one place', async () => {
    const right = signSlackRequest('s', String(NOW), body);
    const v = verifier(fixed('s'));
    // A comparison of a prefix only, or of anything short of every hex digit, lets one through.
    for (const at of [3, 4, 20, 35, right.length - 2, right.length - 1]) {
      const digit = right[at] === '0' ? '1' : '0';
      const wrong = `${right.slice(0, at)}${digit}${right.slice(at + 1)}`;
      expect(await v.verify(signed('s', { signature: wrong }))).toMatchObject({
        outcome: 'bad_signature',
        status: 401,
      });
    }
  });

  it('never reads the secret for a request without a plausible signature', async () => {
    let reads = 0;
    const secret = secretFrom(() => {
      reads += 1;
      return Promise.resolve('s');
    });
    const v = verifier(secret);
    const cases: [Partial<SlackRequest>, string][] = [
      [{ signature: undefined }, 'unsigned'],
      [{ timestamp: undefined }, 'unsigned'],
      [{ signature: 'v0=zz' }, 'bad_signature'],
      [{ signature: `v1=${'0'.repeat(64)}` }, 'bad_signature'],
      [{ timestamp: '12ab' }, 'bad_signature'],
      [{ timestamp: String(NOW + 301) }, 'stale'],
    ];
    for (const [overrides, outcome] of cases) {
      expect(await v.verify(signed('s', overrides))).toMatchObject({ outcome, status: 401 });
    }
    expect(reads).toBe(0);
  });

  it('honours ssl_check only in a form-encoded slash command', async () => {
    const sslCheck = Buffer.from('token=x&ssl_check=1&team_id=T1');
    const unsigned = { signature: undefined, timestamp: undefined, body: sslCheck };
    const v = verifier(fixed('s'));
    expect(await v.verify(signed('s', unsigned))).toMatchObject({ outcome: 'ssl_check' });
    for (const overrides of [
      { contentType: 'application/json' },
      { contentType: undefined },
      { kind: 'events' as const },
      { body: Buffer.from('ssl_check=10') },
      { body: Buffer.from('xssl_check=1') },
      { body: Buffer.from('ssl_check=1x&a=b') },
    ]) {
      expect(await v.verify(signed('s', { ...unsigned, ...overrides }))).toMatchObject({
        outcome: 'unsigned',
        status: 401,
      });
    }
  });

  it('refuses everything but ssl_check when no secret is configured', async () => {
    expect(await verifier(undefined).verify(signed('s'))).toStrictEqual({
      accepted: false,
      outcome: 'not_configured',
      status: 503,
      error: 'slack is not configured',
    });
    const check = signed('s', { signature: undefined, body: Buffer.from('ssl_check=1') });
    expect(await verifier(undefined).verify(check)).toEqual({
      accepted: false,
      outcome: 'ssl_check',
    });
  });

  it('refuses with the reason when the secret cannot be read, never its message', async () => {
    const failing = secretFrom(() => Promise.reject(new UpstreamError('sealed')));
    expect(await verifier(failing).verify(signed('s'))).toEqual({
      accepted: false,
      outcome: 'secret_unavailable',
      status: 503,
      error: 'temporarily unavailable',
      reason: 'sealed',
    });
  });

  it('reads the secret again after a mismatch, so a rotation is accepted', async () => {
    let current = 'old';
    let reads = 0;
    const secret = secretFrom(() => {
      reads += 1;
      return Promise.resolve(current);
    });
    const v = verifier(secret);
    expect(await v.verify(signed('old'))).toEqual({ accepted: true });
    current = 'new';
    expect(await v.verify(signed('new'))).toEqual({ accepted: true });
    expect(reads).toBe(2);
  });
});
