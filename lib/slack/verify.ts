import { reasonOf } from '../errors';
import { formHasField } from '../http/parse';
import type { SlackKind, SlackOutcome } from './outcomes';
import { precheckSlackSignature, verifySlackSignature } from './signature';
import type { SigningSecret } from './signing-secret';

/** What the verifier needs of a request: nothing here reads a socket or writes an answer. */
export interface SlackRequest {
  kind: SlackKind;
  /** X-Slack-Request-Timestamp and X-Slack-Signature, when present once. */
  timestamp: string | undefined;
  signature: string | undefined;
  /** The raw body bytes, exactly as received: nothing has parsed them. */
  body: Buffer;
  /** The Content-Type header: ssl_check counts only in a form. */
  contentType: string | undefined;
}

/** The request may go on to its handler. */
export interface Accepted {
  accepted: true;
}

/** Slack's certificate check: answered with an empty 200, and nothing else done. */
export interface SslCheck {
  accepted: false;
  outcome: 'ssl_check';
}

/** The request goes no further: answer `status` with `error`. */
export interface Refused {
  accepted: false;
  outcome: Exclude<SlackOutcome, 'ok' | 'ssl_check'>;
  status: number;
  error: string;
  /** Why, for the log: never a body, a secret or a signature. */
  reason?: string;
}

export type SlackVerdict = Accepted | SslCheck | Refused;

export interface SlackVerifierOptions {
  /** Undefined when no signing secret is configured: every request is then refused. */
  secret: SigningSecret | undefined;
  maxBodyBytes: number;
  nowSeconds: () => number;
}

export const FORM = 'application/x-www-form-urlencoded';
/** Slack's certificate check, as its form field: encoded once, searched for in every command. */
const SSL_CHECK = Buffer.from('ssl_check=1');

/** The media type of a Content-Type header, lower case, without parameters. */
export function mediaType(contentType: string | undefined): string | undefined {
  return contentType?.split(';')[0]?.trim().toLowerCase();
}

/**
 * Slack sends ssl_check only as a form-encoded slash command (Bolt refuses it otherwise). Asked of
 * the raw bytes: an unsigned body is never parsed.
 */
function isSslCheck(request: SlackRequest): boolean {
  return (
    request.kind === 'commands' &&
    formHasField(request.body, SSL_CHECK) &&
    mediaType(request.contentType) === FORM
  );
}

const refused = (
  outcome: Refused['outcome'],
  status: number,
  error: string,
  reason?: string,
): Refused => ({
  accepted: false,
  outcome,
  status,
  error,
  ...(reason === undefined ? {} : { reason }),
});

/**
 * Decides whether a Slack request is genuine from its headers and raw bytes, before anything
 * parses them: size first, ssl_check, then the headers and timestamp (no secret read for a request
 * without a plausible signature), then the v0 signature with the signing secret (read again once
 * after a mismatch, in case it was rotated).
 */
export class SlackVerifier {
  constructor(private readonly options: SlackVerifierOptions) {}

  /** The largest body a Slack request may have. */
  get maxBodyBytes(): number {
    return this.options.maxBodyBytes;
  }

  async verify(request: SlackRequest): Promise<SlackVerdict> {
    const { secret, maxBodyBytes, nowSeconds } = this.options;
    if (request.body.length > maxBodyBytes) return refused('too_large', 413, 'request too large');
    if (isSslCheck(request)) {
      // Slack's certificate check carries no signature and asks for nothing but a 200.
      return { accepted: false, outcome: 'ssl_check' };
    }
    if (secret === undefined) return refused('not_configured', 503, 'slack is not configured');
    const precheck = precheckSlackSignature(request, nowSeconds());
    if (precheck !== undefined) return refused(precheck, 401, 'invalid request');
    let current: string;
    try {
      current = await secret.current();
    } catch (error) {
      return refused('secret_unavailable', 503, 'temporarily unavailable', reasonOf(error));
    }
    let verdict = verifySlackSignature(current, request, nowSeconds());
    if (verdict === 'bad_signature') {
      const rotated = await secret.refreshAfterMismatch().catch(() => undefined);
      if (rotated !== undefined) verdict = verifySlackSignature(rotated, request, nowSeconds());
    }
    return verdict === 'ok' ? { accepted: true } : refused(verdict, 401, 'invalid request');
  }
}
