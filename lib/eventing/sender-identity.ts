import type { IncomingMessage } from 'node:http';
import type { JWTVerifyGetKey } from 'jose';
import { Counter, type Registry } from 'prom-client';
import { errorName } from '../errors';
import type { Refusal } from '../http/router';
import type { Logger } from '../logger';
import { METRIC_PREFIX } from '../metrics';
import { KeysUnavailable, readIssuerKeys, type IssuerKeysSource } from './issuer-keys';

let joseModule: typeof import('jose') | undefined;
/** jose, loaded on first use: only the event functions verify tokens, and only with an audience. */
function jose(): typeof import('jose') {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  joseModule ??= require('jose') as typeof import('jose');
  return joseModule;
}

/** Why a delivery was not authenticated: the label values of the failures metric. */
export const AUTH_FAILURE_REASONS = [
  'missing',
  'malformed',
  'bad_algorithm',
  'bad_signature',
  'unknown_key',
  'wrong_issuer',
  'wrong_audience',
  'wrong_subject',
  'expired',
  'not_yet_valid',
  'keys_unavailable',
] as const;
export type AuthFailureReason = (typeof AUTH_FAILURE_REASONS)[number];

/** Kubernetes signs service-account tokens with these; never `none`, never an HMAC. */
export const ALGORITHMS = ['RS256', 'ES256'];
/** Clock skew allowed on `exp` and `nbf`, in seconds. */
export const CLOCK_TOLERANCE_SECONDS = 60;
/** Least time between two reads of the issuer's keys, whatever asks for them (an unknown `kid`). */
export const KEYS_COOLDOWN_MS = 10_000;
/** Keys this old are read again on the next delivery; kept when reading them fails. */
export const KEYS_MAX_AGE_MS = 5 * 60_000;
/** Bounds each read of the issuer's keys, discovery included. */
export const KEYS_TIMEOUT_MS = 2000;
/** Bounds each answer from the issuer (a key set is a few KiB). */
export const KEYS_MAX_BYTES = 256 * 1024;
/** A Kubernetes service-account token is about 1 KiB; a longer header is not one. */
const MAX_TOKEN_CHARS = 8192;
const BEARER = /^Bearer +([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)$/i;

export interface SenderIdentityOptions extends Omit<IssuerKeysSource, 'maxBytes'> {
  /** What each token's `aud` must hold (the Trigger's `subscriber.audience`). */
  audience: string;
  /** The `sub` values allowed; empty for any the issuer signs. */
  subjects: readonly string[];
  /** KEYS_COOLDOWN_MS unless said (tests). */
  keysCooldownMs?: number;
  /** KEYS_MAX_AGE_MS unless said (tests). */
  keysMaxAgeMs?: number;
}

export type Verdict =
  { ok: true; subject: string } | { ok: false; reason: AuthFailureReason; detail?: string };

/**
 * Checks the Bearer token Knative Eventing's dispatcher sends with each delivery (the
 * `authentication-oidc` feature): a JWT from the cluster's service-account issuer, RS256 or ES256,
 * signed by one of the issuer's keys, for this audience, from an allowed subject, within its
 * lifetime. Keys are read on first use, again on an unknown `kid` or when older than
 * KEYS_MAX_AGE_MS, never more than once per cooldown; when a read fails the keys held are kept.
 */
export class SenderIdentity {
  private readonly cooldownMs: number;
  private readonly maxAgeMs: number;
  private readonly allowed: ReadonlySet<string>;
  private keys: (JWTVerifyGetKey & { reload: () => Promise<void> }) | undefined;
  private lastAttemptAt = Number.NEGATIVE_INFINITY;
  private lastSuccessAt = Number.NEGATIVE_INFINITY;

  constructor(private readonly options: SenderIdentityOptions) {
    this.cooldownMs = options.keysCooldownMs ?? KEYS_COOLDOWN_MS;
    this.maxAgeMs = options.keysMaxAgeMs ?? KEYS_MAX_AGE_MS;
    this.allowed = new Set(options.subjects);
  }

  /** The verdict on a request's `Authorization` header. */
  async verify(authorization: string | undefined): Promise<Verdict> {
    if (authorization === undefined || authorization === '')
      return { ok: false, reason: 'missing' };
    const token =
      authorization.length <= MAX_TOKEN_CHARS ? BEARER.exec(authorization)?.[1] : undefined;
    if (token === undefined) return { ok: false, reason: 'malformed' };
    const { jwtVerify } = jose();
    const keys = this.keySet();
    // Stale keys are read again, and a failure keeps them; the first read is jose's own.
    const age = Date.now() - this.lastSuccessAt;
    // Stryker disable next-line EqualityOperator: keys exactly as old as the limit, to the millisecond, may go either way
    if (Number.isFinite(age) && age > this.maxAgeMs && !this.coolingDown()) {
      await keys.reload().catch(() => undefined);
    }
    try {
      const { payload } = await jwtVerify(token, keys, {
        issuer: this.options.issuer,
        audience: this.options.audience,
        algorithms: ALGORITHMS,
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        requiredClaims: ['exp', 'sub'],
      });
      // Stryker disable next-line StringLiteral: never used, jwtVerify requires `sub` (requiredClaims)
      const subject = payload.sub ?? '';
      if (this.allowed.size > 0 && !this.allowed.has(subject)) {
        return { ok: false, reason: 'wrong_subject', detail: subject };
      }
      return { ok: true, subject };
    } catch (error) {
      return failureOf(error);
    }
  }

  private coolingDown(): boolean {
    // Stryker disable next-line EqualityOperator: a read exactly one cooldown after the last, to the millisecond, may go either way
    return Date.now() - this.lastAttemptAt < this.cooldownMs;
  }

  /** jose's remote key set, its every read going through readIssuerKeys, at most once a cooldown. */
  private keySet(): JWTVerifyGetKey & { reload: () => Promise<void> } {
    if (this.keys !== undefined) return this.keys;
    const { createRemoteJWKSet, customFetch } = jose();
    const source: IssuerKeysSource = { ...this.options, maxBytes: KEYS_MAX_BYTES };
    const fetchKeys = async (_url: string, init: { signal: AbortSignal }): Promise<Response> => {
      if (this.coolingDown()) throw new KeysUnavailable('read less than a cooldown ago');
      this.lastAttemptAt = Date.now();
      const jwks = await readIssuerKeys(source, init.signal);
      this.lastSuccessAt = Date.now();
      // Stryker disable next-line ObjectLiteral: a Response's status is 200 unless said
      return new Response(JSON.stringify(jwks), { status: 200 });
    };
    // The URL is jose's cache key only: fetchKeys finds the real one (discovery or the setting).
    // Stryker disable next-line ConditionalExpression: which of the two is the key changes nothing
    const url = new URL(this.options.jwksUrl === '' ? this.options.issuer : this.options.jwksUrl);
    const remote = createRemoteJWKSet(url, {
      cooldownDuration: this.cooldownMs,
      timeoutDuration: KEYS_TIMEOUT_MS,
      cacheMaxAge: Number.POSITIVE_INFINITY,
      [customFetch]: fetchKeys,
    });
    const keys = async (...args: Parameters<JWTVerifyGetKey>) => {
      try {
        return await remote(...args);
      } catch (error) {
        const code = (error as { code?: unknown }).code;
        if (code === 'ERR_JWKS_NO_MATCHING_KEY' || code === 'ERR_JWKS_MULTIPLE_MATCHING_KEYS') {
          throw error;
        }
        throw error instanceof KeysUnavailable ? error : new KeysUnavailable(errorName(error));
      }
    };
    this.keys = Object.assign(keys, { reload: () => remote.reload() });
    return this.keys;
  }
}

/** jose's error as a reason: its `code`, and for a failed claim, which claim. */
function failureOf(error: unknown): Verdict & { ok: false } {
  if (error instanceof KeysUnavailable) {
    return { ok: false, reason: 'keys_unavailable', detail: error.message };
  }
  const { code, claim, reason } = error as { code?: unknown; claim?: unknown; reason?: unknown };
  switch (code) {
    case 'ERR_JWT_EXPIRED':
      return { ok: false, reason: 'expired' };
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
    case 'ERR_JOSE_NOT_SUPPORTED':
      return { ok: false, reason: 'bad_algorithm' };
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return { ok: false, reason: 'bad_signature' };
    case 'ERR_JWKS_NO_MATCHING_KEY':
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
      return { ok: false, reason: 'unknown_key' };
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      // Only a claim checked and found wrong says which; one left out or not of its type (an `exp`
      // that is no number) is a token Kubernetes never issues.
      if (reason !== 'check_failed') return { ok: false, reason: 'malformed' };
      return { ok: false, reason: CLAIM_REASONS[String(claim)] ?? 'malformed' };
    default:
      return { ok: false, reason: 'malformed' };
  }
}

/** Claims found wrong, by name; a past `exp` is jose's ERR_JWT_EXPIRED. */
const CLAIM_REASONS: Readonly<Record<string, AuthFailureReason>> = {
  aud: 'wrong_audience',
  iss: 'wrong_issuer',
  nbf: 'not_yet_valid',
};

/** The answer to a request whose sender could not be checked now: Knative retries a 503. */
export const KEYS_UNAVAILABLE: Refusal = {
  status: 503,
  error: 'authentication unavailable',
  headers: { 'Retry-After': String(Math.ceil(KEYS_COOLDOWN_MS / 1000)) },
};
/** The answer to a request from an unknown sender: a 401 is not retried. */
export const UNAUTHENTICATED: Refusal = {
  status: 401,
  error: 'unauthenticated',
  headers: { 'WWW-Authenticate': 'Bearer' },
};

/** Checks a request's sender before its body is read: undefined lets it on. */
export type Authenticate = (req: IncomingMessage) => Promise<Refusal | undefined>;

/**
 * A route's authentication step: each refusal counted by reason and logged in one warning line
 * with the function's name and the reason (never the token).
 */
export function senderAuthentication(
  identity: SenderIdentity,
  deps: { name: string; logger: Logger; countFailure: (reason: AuthFailureReason) => void },
): Authenticate {
  return async (req) => {
    const verdict = await identity.verify(req.headers.authorization);
    if (verdict.ok) return undefined;
    deps.countFailure(verdict.reason);
    deps.logger.warn('event delivery not authenticated', {
      function: deps.name,
      reason: verdict.reason,
      // Left out of the line when there is none: JSON drops an undefined field.
      detail: verdict.detail,
    });
    return verdict.reason === 'keys_unavailable' ? KEYS_UNAVAILABLE : UNAUTHENTICATED;
  };
}

/**
 * Registers `coffeebuddy_event_auth_failures_total{reason}` on `registry`, every reason at 0, and
 * returns what counts one failure.
 */
export function createAuthFailureCounter(registry: Registry): (reason: AuthFailureReason) => void {
  const failures = new Counter({
    name: `${METRIC_PREFIX}event_auth_failures_total`,
    help: 'Event deliveries refused before their body was read because their sender was not authenticated, by reason.',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  for (const reason of AUTH_FAILURE_REASONS) failures.inc({ reason }, 0);
  return (reason) => {
    failures.inc({ reason });
  };
}
