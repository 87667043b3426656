import crypto from 'node:crypto';

/** Slack rejects, and so do we, requests signed more than five minutes from now. */
export const MAX_CLOCK_SKEW_SECONDS = 300;

export type SignatureVerdict = 'ok' | 'unsigned' | 'stale' | 'bad_signature';

/** Slack's v0 signature: "v0=" + hex HMAC-SHA256(secret, "v0:{timestamp}:{raw body}"). */
export function signSlackRequest(secret: string, timestamp: string, body: Buffer | string): string {
  const hmac = crypto.createHmac('sha256', secret);
  hmac.update(`v0:${timestamp}:`);
  hmac.update(body);
  return `v0=${hmac.digest('hex')}`;
}

export interface SignedRequest {
  timestamp: string | undefined;
  signature: string | undefined;
  /** The raw body bytes, exactly as received. */
  body: Buffer;
}

const TIMESTAMP = /^\d{1,12}$/;
const SIGNATURE = /^v0=[0-9a-f]{64}$/;

/**
 * What can be told without the secret: headers present and well-formed, the timestamp inside
 * Slack's window. Undefined when the request is worth checking with the secret; so a request
 * without a plausible signature never causes a secret read.
 */
export function precheckSlackSignature(
  request: Omit<SignedRequest, 'body'>,
  nowSeconds: number,
): Exclude<SignatureVerdict, 'ok'> | undefined {
  const { timestamp, signature } = request;
  if (timestamp === undefined || signature === undefined) return 'unsigned';
  if (!TIMESTAMP.test(timestamp) || !SIGNATURE.test(signature)) return 'bad_signature';
  if (Math.abs(nowSeconds - Number(timestamp)) > MAX_CLOCK_SKEW_SECONDS) return 'stale';
  return undefined;
}

/** The last secret's key, made once: an HMAC given a KeyObject does not copy the key again. */
let lastKey: { secret: string; key: crypto.KeyObject } | undefined;

function keyOf(secret: string): crypto.KeyObject {
  // Stryker disable next-line ConditionalExpression: a key made every time gives the same HMAC, only slower (never made again: the test of alternating secrets fails)
  if (lastKey?.secret !== secret) {
    lastKey = { secret, key: crypto.createSecretKey(Buffer.from(secret, 'utf8')) };
  }
  return lastKey.key;
}

/** Verifies a request's signature in constant time; `nowSeconds` is injectable for tests. */
export function verifySlackSignature(
  secret: string,
  request: SignedRequest,
  nowSeconds: number,
): SignatureVerdict {
  const precheck = precheckSlackSignature(request, nowSeconds);
  if (precheck !== undefined) return precheck;
  // Stryker disable next-line StringLiteral: never used, the precheck refused an undefined header
  const { timestamp = '', signature = '', body } = request;
  const hmac = crypto.createHmac('sha256', keyOf(secret));
  hmac.update(`v0:${timestamp}:`);
  hmac.update(body);
  // The precheck let through only "v0=" and 64 hex digits: the 32 bytes are compared as bytes, in
  // constant time, without encoding the expected digest as text.
  const given = Buffer.from(signature.slice('v0='.length), 'hex');
  return crypto.timingSafeEqual(given, hmac.digest()) ? 'ok' : 'bad_signature';
}
