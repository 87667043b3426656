import { performance } from 'node:perf_hooks';
import { reasonOf } from '../errors';
import { Upstream } from '../http/upstream';
import type { Logger } from '../logger';
import type { SlackApiMetrics, SlackApiOutcome } from './api-metrics';
import { SlackApiError, SlackNetworkError, SlackRateLimitedError } from './client';

/** The method label of response_url posts in the Slack client's metrics. */
export const RESPONSE_URL_METHOD = 'response_url';

/** Slack's budget of one response_url: 5 uses within 30 minutes. */
export const RESPONSE_URL_MAX_USES = 5;
export const RESPONSE_URL_LIFETIME_MS = 30 * 60_000;
/** Slack's response URLs are about 100 characters; a longer one is not Slack's. */
const MAX_URL_LENGTH = 512;
/** Response URLs whose uses are counted at once (about 600 bytes each: under 3 MiB). */
const MAX_URLS_COUNTED = 4096;
/** The wait after a 429 without a usable Retry-After. */
const DEFAULT_RETRY_AFTER_SECONDS = 60;
/** Posts to Slack's hooks at once; beyond, they wait for a socket (within their timeout). */
const MAX_SOCKETS = 16;
/** Slack's error codes (`expired_url`, `used_url`) are snake_case words. */
const ERROR_CODE = /^[a-z0-9_]{1,64}$/;

/** What respond() sends: a text, or the message with its fields (`blocks`, `replace_original`…). */
export type RespondMessage =
  | string
  | (Readonly<Record<string, unknown>> & {
      text?: string;
      blocks?: readonly unknown[];
      response_type?: 'ephemeral' | 'in_channel';
      replace_original?: boolean;
      delete_original?: boolean;
    });

/** respond() was refused before anything was sent: a URL not Slack's, or past its budget. */
export class SlackRespondRefusedError extends Error {
  constructor(readonly reason: 'url_not_allowed' | 'uses_spent' | 'expired') {
    super(`response_url refused: ${reason}`);
    this.name = 'SlackRespondRefusedError';
  }
}

export interface ResponseUrlsOptions {
  /** Response URLs must start with it (SLACK_RESPONSE_URL_PREFIX; hooks.slack.com in production). */
  prefix: string;
  /** Longest one post may take, connection and answer. */
  timeoutMs: number;
  logger: Logger;
  metrics: SlackApiMetrics;
  /** Epoch milliseconds; injectable so that tests can move time. */
  now?: () => number;
  /** Response URLs whose uses are counted at once (default 4,096). */
  maxUrls?: number;
}

interface Budget {
  /** When Slack issued the URL (its request's timestamp), or when it was first used here. */
  issuedAt: number;
  uses: number;
}

/**
 * Posts messages to Slack's response URLs (`respond()`): only under the allowed prefix, within
 * Slack's budget of 5 posts in 30 minutes per URL (counted in this process, in a bounded map), each
 * post within timeoutMs, counted and timed as the Web API's method `response_url`.
 */
export class ResponseUrls {
  /** Built by the first post: an https agent loads TLS, which a cold start should not pay for. */
  private upstream: Upstream | undefined;
  private readonly origin: string;
  private readonly budgets = new Map<string, Budget>();
  private readonly now: () => number;

  constructor(private readonly options: ResponseUrlsOptions) {
    this.origin = new URL(options.prefix).origin;
    this.now = options.now ?? Date.now;
  }

  /**
   * Posts `message` to `url`. `issuedAt` is when Slack sent the request that carried the URL
   * (epoch ms), from which its 30 minutes run. Rejects with SlackRespondRefusedError (nothing
   * sent), SlackRateLimitedError (429), SlackApiError (another status, with Slack's code when it
   * gave one: `expired_url`, `used_url`) or SlackNetworkError (no answer).
   */
  async respond(
    url: string,
    issuedAt: number | undefined,
    message: RespondMessage,
    signal?: AbortSignal,
  ): Promise<void> {
    const started = performance.now();
    let outcome: SlackApiOutcome | 'refused' = 'network_error';
    try {
      const path = this.pathOf(url);
      this.spend(url, issuedAt);
      await this.post(path, typeof message === 'string' ? { text: message } : message, signal);
      outcome = 'ok';
    } catch (error) {
      outcome = outcomeOf(error);
      if (error instanceof SlackRespondRefusedError) {
        this.options.logger.warn('respond refused', { reason: error.reason });
      }
      throw error;
    } finally {
      this.options.metrics.observeCall(
        RESPONSE_URL_METHOD,
        outcome,
        (performance.now() - started) / 1000,
      );
    }
  }

  close(): void {
    this.upstream?.close();
    this.upstream = undefined;
  }

  /** The URL's path under the allowed prefix; a URL elsewhere is refused. */
  private pathOf(url: string): string {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new SlackRespondRefusedError('url_not_allowed');
    }
    // The prefix holds no credentials (a setting's URL may not), so a URL with any cannot match.
    const { href } = parsed;
    if (url.length > MAX_URL_LENGTH || !href.startsWith(this.options.prefix)) {
      throw new SlackRespondRefusedError('url_not_allowed');
    }
    return href.slice(this.origin.length);
  }

  /** Takes one use of the URL's budget, or refuses: spent, or older than 30 minutes. */
  private spend(url: string, issuedAt: number | undefined): void {
    const now = this.now();
    const budget = this.budgets.get(url) ?? { issuedAt: issuedAt ?? now, uses: 0 };
    if (now - budget.issuedAt >= RESPONSE_URL_LIFETIME_MS) {
      throw new SlackRespondRefusedError('expired');
    }
    if (budget.uses >= RESPONSE_URL_MAX_USES) throw new SlackRespondRefusedError('uses_spent');
    budget.uses += 1;
    // Re-inserted at the end: the map's order is least recently used first.
    this.budgets.delete(url);
    this.budgets.set(url, budget);
    for (const [oldest, { issuedAt: at }] of this.budgets) {
      const bound = this.options.maxUrls ?? MAX_URLS_COUNTED;
      if (this.budgets.size <= bound && now - at < RESPONSE_URL_LIFETIME_MS) break;
      this.budgets.delete(oldest);
    }
  }

  private async post(
    path: string,
    body: Readonly<Record<string, unknown>>,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    // Stryker disable next-line ObjectLiteral: the socket bound changes only how many posts wait
    this.upstream ??= new Upstream(this.origin, this.options.timeoutMs, {
      maxSockets: MAX_SOCKETS,
    });
    let answer;
    try {
      answer = await this.upstream.request('POST', path, { json: body, signal });
    } catch (error) {
      throw new SlackNetworkError(RESPONSE_URL_METHOD, reasonOf(error));
    }
    const { status } = answer;
    // Node's client hands over final answers only: 1xx never reach here.
    if (status < 300) return;
    if (status === 429) {
      const seconds = Number(answer.headers['retry-after']);
      throw new SlackRateLimitedError(
        RESPONSE_URL_METHOD,
        Number.isFinite(seconds) && seconds > 0 ? seconds : DEFAULT_RETRY_AFTER_SECONDS,
      );
    }
    throw new SlackApiError(RESPONSE_URL_METHOD, codeOf(answer.body) ?? `http_${status}`);
  }
}

/** Slack's error code in a refusal's body: `expired_url` as text, or `{"error":"…"}`. */
function codeOf(body: Buffer): string | undefined {
  const text = body.toString('utf8').trim();
  if (ERROR_CODE.test(text)) return text;
  try {
    const error = (JSON.parse(text) as { error?: unknown }).error;
    return typeof error === 'string' && ERROR_CODE.test(error) ? error : undefined;
  } catch {
    return undefined;
  }
}

function outcomeOf(error: unknown): SlackApiOutcome | 'refused' {
  if (error instanceof SlackRespondRefusedError) return 'refused';
  if (error instanceof SlackRateLimitedError) return 'rate_limited';
  if (error instanceof SlackApiError) return 'slack_error';
  return 'network_error';
}
