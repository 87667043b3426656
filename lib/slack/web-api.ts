import { AsyncLocalStorage } from 'node:async_hooks';
import http from 'node:http';
import type https from 'node:https';
import type * as WebApi from '@slack/web-api';
import { CachedSecret } from '../cached-secret';
import { vaultSecretValue } from '../clients/vault';
import type { Settings } from '../config/settings';
import { describeFailure, fetchOnFirstUse } from '../http/upstream';
import type { Logger } from '../logger';
import { isSlackMethod, type SlackApiMetrics, type SlackApiOutcome } from './api-metrics';
import {
  SlackApiError,
  SlackNetworkError,
  SlackRateLimitedError,
  type SlackApiResult,
  type SlackCallOptions,
  type SlackClient,
  type SlackClientFactory,
} from './client';

/** Slack's answers that say the token is wrong: it is read again once and the call retried. */
const REREAD_CODES: ReadonlySet<string> = new Set([
  'invalid_auth',
  'not_authed',
  'token_revoked',
  'token_expired',
]);
/** Token problems, counted as `auth_error` (the token is not read again for an inactive account). */
const AUTH_CODES: ReadonlySet<string> = new Set([
  ...REREAD_CODES,
  'account_inactive',
  'not_configured',
  'token_unavailable',
]);
/** Slack's error codes are snake_case words; anything else (an HTML page) is not one. */
const ERROR_CODE = /^[a-z0-9_]{1,64}$/;
/** A 429 without a usable Retry-After: Slack always sends one; a Tier 1 method's minute is safe. */
const DEFAULT_RETRY_AFTER_SECONDS = 60;
/** The one quick retry after a network error (a refused or reset connection). */
const NETWORK_RETRY_DELAY_MS = 100;
/** Slack's answers are kilobytes; a history page with blocks stays well inside this. */
const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;
/** Idle keep-alive sockets are dropped before Slack's edge or a proxy closes them under us. */
const FREE_SOCKET_TIMEOUT_MS = 4000;
const MAX_SOCKETS = 32;
const ABORTED = 'aborted by the caller';

export interface WebApiSlackClientOptions {
  /** The Web API's base URL; method names are appended (`https://slack.com/api/`). */
  apiUrl: string;
  /** Where the bot token comes from; none configured makes every call fail `not_configured`. */
  token: CachedSecret | undefined;
  /** Longest one HTTP request may take, connection and answer. */
  timeoutMs: number;
  logger: Logger;
  metrics: SlackApiMetrics;
}

type FetchInit = Parameters<WebApi.FetchFunction>[1];

/** What one HTTP attempt of a call knows beyond WebClient: the caller's signal, Slack's status. */
interface CallState {
  signal: AbortSignal | undefined;
  status?: number;
}

let sdk: typeof WebApi | undefined;
/** Slack's WebClient, loaded by the first call rather than at start (a cold start never pays it). */
function webApi(): typeof WebApi {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  sdk ??= require('@slack/web-api') as typeof WebApi;
  return sdk;
}

/**
 * The SlackClient on Slack's WebClient. Each call: the bot token from its cache (TTL,
 * stale-if-error), one HTTP attempt within timeoutMs (a refused or reset connection is tried once
 * more after 100 ms; a timeout is not, since Slack may have acted on it), a 429 rejected at once
 * with its Retry-After (never waited out here), a token Slack refuses read again once and the call
 * retried with it. Requests go through node-fetch on a keep-alive agent of the client's own,
 * bounded in sockets and answer bytes, released by close().
 */
export class WebApiSlackClient implements SlackClient {
  private readonly calls = new AsyncLocalStorage<CallState>();
  private readonly host: string;
  private web: { token: string; client: WebApi.WebClient } | undefined;
  private agent: http.Agent | undefined;
  private refreshing: Promise<void> | undefined;
  /** Aborted by close(): requests in flight end, and no retry or new request goes out after. */
  private readonly closing = new AbortController();

  constructor(private readonly options: WebApiSlackClientOptions) {
    this.host = new URL(options.apiUrl).hostname;
  }

  async call(
    method: string,
    args: Readonly<Record<string, unknown>>,
    options: SlackCallOptions = {},
  ): Promise<SlackApiResult> {
    checkCall(method, args);
    const started = performance.now();
    // Stryker disable next-line StringLiteral: never read; the try or the catch always sets it
    let outcome: SlackApiOutcome = 'network_error';
    try {
      const result = await this.authorised(method, args, options.signal);
      outcome = 'ok';
      return result;
    } catch (error) {
      outcome = outcomeOf(error);
      throw error;
    } finally {
      this.options.metrics.observeCall(method, outcome, (performance.now() - started) / 1000);
    }
  }

  close(): void {
    this.closing.abort();
    this.agent?.destroy();
    // Stryker disable next-line BlockStatement,StatementRemoval: once closed, fetch() never reaches agentFor
    this.agent = undefined;
  }

  /** The call with the current token; with the token read again once if Slack refuses it. */
  private async authorised(
    method: string,
    args: Readonly<Record<string, unknown>>,
    signal: AbortSignal | undefined,
  ): Promise<SlackApiResult> {
    if (signal?.aborted === true) throw new SlackNetworkError(method, ABORTED);
    const token = await this.currentToken(method);
    try {
      return await this.request(token, method, args, signal);
    } catch (error) {
      if (!(error instanceof SlackApiError) || !REREAD_CODES.has(error.code)) throw error;
      const fresh = await this.tokenAfterRejection(token, method, error.code);
      if (fresh === undefined) throw error;
      return await this.request(fresh, method, args, signal);
    }
  }

  private async currentToken(method: string): Promise<string> {
    const source = this.options.token;
    if (source === undefined) throw new SlackApiError(method, 'not_configured');
    try {
      return await source.current();
    } catch {
      throw new SlackApiError(method, 'token_unavailable');
    }
  }

  /**
   * A token other than `refused`, read again from its source once (concurrent refusals share the
   * read, and CachedSecret allows one forced read per TTL); undefined when it has not changed.
   */
  private async tokenAfterRejection(
    refused: string,
    method: string,
    code: string,
  ): Promise<string | undefined> {
    const source = this.options.token;
    // Stryker disable next-line ConditionalExpression,BlockStatement: a refusal comes only after currentToken() read one from the source
    if (source === undefined) return undefined;
    this.refreshing ??= source
      .refreshAfterRejection()
      .then(
        (fresh) => {
          if (fresh === undefined) return;
          this.options.logger.warn('Slack refused the bot token; using the one read again', {
            method,
            error: code,
          });
        },
        () => undefined, // the refusal stands; reading failed the same way the next read will
      )
      .finally(() => {
        this.refreshing = undefined;
      });
    await this.refreshing;
    const now = await source.current().catch(() => undefined);
    return now === refused ? undefined : now;
  }

  /** One call through WebClient, its errors made the protocol's. */
  private async request(
    token: string,
    method: string,
    args: Readonly<Record<string, unknown>>,
    signal: AbortSignal | undefined,
  ): Promise<SlackApiResult> {
    const state: CallState = { signal };
    try {
      const client = this.clientFor(token);
      // WebClient calls fetch synchronously inside apiCall (its queue never waits: concurrency
      // is unbounded there), so the adapter finds this call's signal in the async context.
      const result = await this.calls.run(state, () => client.apiCall(method, { ...args }));
      return result as SlackApiResult;
    } catch (error) {
      throw this.failure(method, error, state);
    }
  }

  /** One WebClient per token: a new one only when the token changes (a rotation). */
  private clientFor(token: string): WebApi.WebClient {
    // Stryker disable next-line ConditionalExpression: a new WebClient sends the same requests through the same agent; keeping one saves only its construction
    if (this.web?.token === token) return this.web.client;
    const { WebClient } = webApi();
    const retryConfig: WebApi.RetryOptions & { onFailedAttempt: (error: Error) => void } = {
      retries: 1,
      factor: 1,
      minTimeout: NETWORK_RETRY_DELAY_MS,
      maxTimeout: NETWORK_RETRY_DELAY_MS,
      // Stryker disable next-line BooleanLiteral: the retry waits 100 to 200 ms instead of 100: timing only
      randomize: false,
      // WebClient retries every failure but 429; p-retry stops when this throws.
      onFailedAttempt: (error) => {
        if (!this.retryable(error)) throw error;
      },
    };
    const client = new WebClient(token, {
      slackApiUrl: this.options.apiUrl,
      rejectRateLimitedCalls: true,
      retryConfig,
      timeout: this.options.timeoutMs,
      maxRequestConcurrency: Infinity,
      // Stryker disable next-line BooleanLiteral: checkCall() already refuses any method that is not a name (no URL reaches WebClient)
      allowAbsoluteUrls: false,
      fetch: (url, init) => this.fetch(String(url), init),
      logger: webApiLogger(this.options.logger),
    });
    this.web = { token, client };
    return client;
  }

  /** A network error worth one more attempt: the connection refused or reset, not a timeout. */
  private retryable(error: Error): boolean {
    const state = this.calls.getStore();
    // Stryker disable next-line ConditionalExpression,LogicalOperator,OptionalChaining,BooleanLiteral: a retry after an abort or close() is never sent either way (fetch() refuses once closed, node-fetch an aborted signal before connecting); this spares only the 100 ms wait
    if (this.closing.signal.aborted || state?.signal?.aborted === true) return false;
    if (!(error instanceof webApi().WebAPIRequestError)) return false;
    const { name, type } = error.original as { name?: string; type?: string };
    // Stryker disable next-line ConditionalExpression,LogicalOperator,StringLiteral: node-fetch's AbortError (a timeout, an abort) has both name AbortError and type aborted; TimeoutError is a native fetch's: each clause alone refuses every abort node-fetch raises
    return name !== 'AbortError' && name !== 'TimeoutError' && type !== 'aborted';
  }

  /** WebClient's fetch: node-fetch on the client's agent, with the caller's signal as well. */
  private fetch(url: string, init: FetchInit): ReturnType<WebApi.FetchFunction> {
    const state = this.calls.getStore();
    // Stryker disable next-line ConditionalExpression,BlockStatement,StringLiteral: WebClient calls fetch only inside calls.run() (its retry timer keeps the async context)
    if (state === undefined) throw new Error('a Slack request outside a call');
    // Stryker disable next-line ConditionalExpression,BlockStatement,StringLiteral,OptionalChaining: WebClient always sends a form as a string (checkCall() refuses files)
    if (typeof init?.body !== 'string') throw new Error('only form bodies are sent');
    // A retry WebClient scheduled before close() still calls here: it must not open a new agent.
    // Stryker disable next-line StringLiteral: the text reaches no one: describeFailure() calls it "request failed"
    if (this.closing.signal.aborted) return Promise.reject(new Error('the Slack client is closed'));
    const signals = [init.signal, state.signal, this.closing.signal].filter(
      (s): s is AbortSignal => s !== undefined,
    );
    return fetchOnFirstUse()(url, {
      method: init.method,
      headers: init.headers,
      body: init.body,
      redirect: init.redirect,
      signal: AbortSignal.any(signals),
      agent: this.agentFor(url),
      size: MAX_RESPONSE_BYTES,
    }).then((response) => {
      state.status = response.status;
      return response;
    });
  }

  private agentFor(url: string): http.Agent {
    if (this.agent !== undefined) return this.agent;
    // Stryker disable next-line ObjectLiteral: socket reuse and bounds only: every call is sent and answered the same
    const options = {
      // Stryker disable next-line BooleanLiteral: a new connection per call instead of a reused one: the same requests and answers
      keepAlive: true,
      maxSockets: MAX_SOCKETS,
      maxFreeSockets: 4,
      timeout: FREE_SOCKET_TIMEOUT_MS,
    };
    this.agent = url.startsWith('https:')
      ? // Loaded with the first call: TLS would cost every cold start.
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        new (require('node:https') as typeof https).Agent(options)
      : new http.Agent(options);
    return this.agent;
  }

  /** The protocol's error for WebClient's: a code or reason, never a body, header or token. */
  private failure(method: string, error: unknown, state: CallState): Error {
    const web = webApi();
    if (error instanceof web.WebAPIRateLimitedError) {
      return new SlackRateLimitedError(method, Math.max(1, error.retryAfter));
    }
    if (state.status === 429) return new SlackRateLimitedError(method, DEFAULT_RETRY_AFTER_SECONDS);
    if (error instanceof web.WebAPIPlatformError) {
      const code = error.data.error;
      return new SlackApiError(method, ERROR_CODE.test(code) ? code : 'invalid_response');
    }
    if (error instanceof web.WebAPIHTTPError) {
      return new SlackApiError(method, `http_${error.statusCode}`);
    }
    if (state.signal?.aborted === true) return new SlackNetworkError(method, ABORTED);
    const cause = error instanceof web.WebAPIRequestError ? error.original : error;
    return new SlackNetworkError(method, describeFailure(cause, this.host, this.options.timeoutMs));
  }
}

/** A programmer's mistake, refused before anything is sent or counted. */
function checkCall(method: string, args: Readonly<Record<string, unknown>>): void {
  if (!isSlackMethod(method)) {
    throw new TypeError('a Slack call needs a Web API method name such as chat.postMessage');
  }
  if ('token' in args) throw new TypeError('the Slack client sends the bot token: pass none');
  if (Object.values(args).some((value) => Buffer.isBuffer(value))) {
    throw new TypeError('the Slack client sends form bodies: no file uploads');
  }
}

function outcomeOf(error: unknown): SlackApiOutcome {
  if (error instanceof SlackRateLimitedError) return 'rate_limited';
  if (error instanceof SlackApiError)
    return AUTH_CODES.has(error.code) ? 'auth_error' : 'slack_error';
  return 'network_error';
}

/**
 * WebClient's logger: its warnings (a message without `text`, Slack's response warnings) as ours,
 * first argument only (a later one may hold a URL or an error); its debug lines dropped.
 */
function webApiLogger(logger: Logger): WebApi.Logger {
  const forward =
    (level: 'info' | 'warn') =>
    (...msg: unknown[]): void => {
      // Stryker disable next-line ConditionalExpression: every log call of @slack/web-api 7 passes a string first
      if (typeof msg[0] === 'string') logger[level](msg[0], { source: '@slack/web-api' });
    };
  return {
    debug: () => undefined,
    // Stryker disable next-line StringLiteral: WebClient logs at info only when it waits out a rate limit, which rejectRateLimitedCalls stops
    info: forward('info'),
    warn: forward('warn'),
    error: forward('warn'),
    setLevel: () => undefined,
    // Stryker disable next-line ArrowFunction: @slack/web-api 7 never asks its logger's level
    getLevel: () => webApi().LogLevel.INFO,
    setName: () => undefined,
  };
}

/** Where the bot token comes from: SLACK_BOT_TOKEN outside production, else Vault, else nowhere. */
function botToken(settings: Settings, deps: Parameters<SlackClientFactory>[1]) {
  const reuse = {
    ttlMs: settings.SLACK_SECRET_TTL_MS,
    staleMs: settings.SLACK_SECRET_STALE_MS,
  };
  if (settings.SLACK_BOT_TOKEN !== '') {
    const token = settings.SLACK_BOT_TOKEN;
    return new CachedSecret({ load: () => Promise.resolve(token), ...reuse });
  }
  const path = settings.SLACK_BOT_TOKEN_VAULT_PATH;
  if (path === '') return undefined;
  const where = { mount: settings.VAULT_KV_MOUNT, path, key: settings.SLACK_BOT_TOKEN_VAULT_KEY };
  return new CachedSecret({ load: vaultSecretValue(deps.vault, where), ...reuse });
}

/** The default SlackClientFactory: WebClient loaded by the first call. */
export const buildSlackClient: SlackClientFactory = (settings, deps) =>
  new WebApiSlackClient({
    apiUrl: settings.SLACK_API_URL,
    token: botToken(settings, deps),
    timeoutMs: settings.SLACK_API_TIMEOUT_MS,
    logger: deps.logger,
    metrics: deps.metrics,
  });
