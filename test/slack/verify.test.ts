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
    fields: { command: '/coffee', text: 'help' },
    ...overrides,
  };
}

const verifier = (secret: SigningSecret | undefined, maxBodyBytes = 1024) =>
  new SlackVerifier({ secret, maxBodyBytes, nowSeconds: () => NOW });
const fixed = (value: string) => new SigningSecret(() => Promise.resolve(value), 60_000);

describe('SlackVerifier', () => {
  it('accepts a request signed with the secret', async () => {
    expect(await verifier(fixed('s')).verify(signed('s'))).toEqual({ accepted: true });
  });

  it.each<[string, Partial<SlackRequest>, string, number]>([
    ['no signature', { signature: undefined }, 'unsigned', 401],
    ['no timestamp', { timestamp: undefined }, 'unsigned', 401],
    [
      'another secret',
      { signature: signSlackRequest('x', String(NOW), body) },
      'bad_signature',
      401,
    ],
    ['a stale timestamp', { timestamp: String(NOW - 301) }, 'stale', 401],
    ['a body over the limit', { body: Buffer.alloc(1025) }, 'too_large', 413],
  ])('refuses %s', async (_name, overrides, outcome, status) => {
    const verdict = await verifier(fixed('s')).verify(signed('s', overrides));
    expect(verdict).toMatchObject({ accepted: false, outcome, status });
  });

  it('refuses everything but ssl_check when no secret is configured', async () => {
    expect(await verifier(undefined).verify(signed('s'))).toMatchObject({
      outcome: 'not_configured',
      status: 503,
    });
    const check = signed('s', { signature: undefined, fields: { ssl_check: '1' } });
    expect(await verifier(undefined).verify(check)).toMatchObject({
      outcome: 'ssl_check',
      status: 200,
    });
  });

  it('refuses with the reason when the secret cannot be read, never its message', async () => {
    const failing = new SigningSecret(() => Promise.reject(new UpstreamError('sealed')), 60_000);
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
    const secret = new SigningSecret(() => {
      reads += 1;
      return Promise.resolve(current);
    }, 60_000);
    const v = verifier(secret);
    expect(await v.verify(signed('old'))).toEqual({ accepted: true });
    current = 'new';
    expect(await v.verify(signed('new'))).toEqual({ accepted: true });
    expect(reads).toBe(2);
  });
});
