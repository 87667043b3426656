import {
  MAX_CLOCK_SKEW_SECONDS,
  signSlackRequest,
  verifySlackSignature,
} from '../../lib/slack/signature';

// Slack's own example ("Verifying requests from Slack", api.slack.com).
const DOC_SECRET = '8f742231b10e8888abcd99yyyzzz85a5';
const DOC_TIMESTAMP = '1531420618';
const DOC_BODY =
  'token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c';
const DOC_SIGNATURE = 'v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503';
const DOC_NOW = Number(DOC_TIMESTAMP) + 30;

const docRequest = (
  overrides: Partial<{
    timestamp: string | undefined;
    signature: string | undefined;
    body: Buffer;
  }> = {},
) => ({
  timestamp: DOC_TIMESTAMP,
  signature: DOC_SIGNATURE,
  body: Buffer.from(DOC_BODY),
  ...overrides,
});

describe('Slack request signatures', () => {
  it('computes the known answer from Slack’s documentation', () => {
    expect(signSlackRequest(DOC_SECRET, DOC_TIMESTAMP, DOC_BODY)).toBe(DOC_SIGNATURE);
  });

  it('accepts the documented request', () => {
    expect(verifySlackSignature(DOC_SECRET, docRequest(), DOC_NOW)).toBe('ok');
  });

  it('refuses timestamps more than five minutes old or ahead', () => {
    const ts = Number(DOC_TIMESTAMP);
    expect(verifySlackSignature(DOC_SECRET, docRequest(), ts + MAX_CLOCK_SKEW_SECONDS)).toBe('ok');
    expect(verifySlackSignature(DOC_SECRET, docRequest(), ts + MAX_CLOCK_SKEW_SECONDS + 1)).toBe(
      'stale',
    );
    expect(verifySlackSignature(DOC_SECRET, docRequest(), ts - MAX_CLOCK_SKEW_SECONDS - 1)).toBe(
      'stale',
    );
  });

  it('refuses a body with one byte changed', () => {
    const body = Buffer.from(DOC_BODY);
    body.writeUInt8(body.readUInt8(body.length - 1) ^ 1, body.length - 1);
    expect(verifySlackSignature(DOC_SECRET, docRequest({ body }), DOC_NOW)).toBe('bad_signature');
  });

  it('refuses another secret, a wrong version prefix, and malformed signatures', () => {
    expect(verifySlackSignature('another-secret', docRequest(), DOC_NOW)).toBe('bad_signature');
    const v1 = DOC_SIGNATURE.replace('v0=', 'v1=');
    expect(verifySlackSignature(DOC_SECRET, docRequest({ signature: v1 }), DOC_NOW)).toBe(
      'bad_signature',
    );
    for (const signature of [
      '',
      'v0=',
      DOC_SIGNATURE.slice(0, -1),
      `${DOC_SIGNATURE}0`,
      DOC_SIGNATURE.toUpperCase(),
      `x${DOC_SIGNATURE}`,
      `v0=${DOC_SIGNATURE}`,
    ]) {
      expect(verifySlackSignature(DOC_SECRET, docRequest({ signature }), DOC_NOW)).toBe(
        'bad_signature',
      );
    }
  });

  it('verifies with whichever secret it is given, as it changes back and forth (a rotation)', () => {
    const signedWith = (secret: string) => {
      const timestamp = String(DOC_NOW);
      const body = Buffer.from(DOC_BODY);
      return { timestamp, body, signature: signSlackRequest(secret, timestamp, body) };
    };
    // The second is not ASCII: its key is its UTF-8 bytes, as Slack's and signSlackRequest's.
    const [old, rotated] = ['old-secret', 'n\u00e9w-secret-\u2615'];
    for (const secret of [old, rotated, old, rotated]) {
      const other = secret === old ? rotated : old;
      expect(verifySlackSignature(secret, signedWith(secret), DOC_NOW)).toBe('ok');
      expect(verifySlackSignature(secret, signedWith(other), DOC_NOW)).toBe('bad_signature');
    }
  });

  it('refuses a signature made with another timestamp, and a non-numeric timestamp', () => {
    const other = String(Number(DOC_TIMESTAMP) + 1);
    expect(verifySlackSignature(DOC_SECRET, docRequest({ timestamp: other }), DOC_NOW)).toBe(
      'bad_signature',
    );
    expect(
      verifySlackSignature(DOC_SECRET, docRequest({ timestamp: '1531420618.5' }), DOC_NOW),
    ).toBe('bad_signature');
  });

  it('refuses a timestamp that is not plain digits, even with a signature made over it', () => {
    // Number() reads these as a time inside the window, or as NaN, which no window check catches.
    for (const timestamp of [
      ` ${DOC_TIMESTAMP}`,
      `${DOC_TIMESTAMP} `,
      `+${DOC_TIMESTAMP}`,
      `x${DOC_TIMESTAMP}`,
      'now',
    ]) {
      const signature = signSlackRequest(DOC_SECRET, timestamp, DOC_BODY);
      expect(verifySlackSignature(DOC_SECRET, docRequest({ timestamp, signature }), DOC_NOW)).toBe(
        'bad_signature',
      );
    }
  });

  it('calls a request without the headers unsigned', () => {
    expect(verifySlackSignature(DOC_SECRET, docRequest({ signature: undefined }), DOC_NOW)).toBe(
      'unsigned',
    );
    expect(verifySlackSignature(DOC_SECRET, docRequest({ timestamp: undefined }), DOC_NOW)).toBe(
      'unsigned',
    );
  });
});
