import type { VaultClient } from '../clients/vault';
import type { Settings } from '../config/settings';
import type { Logger } from '../logger';
import type { SlackApiMetrics } from './api-metrics';

/** What Slack answered a Web API call that succeeded: `ok: true` and the method's own fields. */
export type SlackApiResult = Readonly<Record<string, unknown>> & { readonly ok: true };

export interface SlackCallOptions {
  /** Gives up the call (the handler's deadline). */
  signal?: AbortSignal;
}

/**
 * Slack's Web API as CoffeeBuddy's features call it: the bot of one workspace, its token found by
 * the client (never by a feature). Every call is counted and timed by method.
 */
export interface SlackClient {
  /**
   * Calls a Web API method (`chat.postMessage`) with its arguments and resolves with Slack's answer
   * when it is `ok`. Rejects with SlackRateLimitedError on 429 (never waited out inside a handler),
   * SlackApiError when Slack answers `ok: false` (a token problem after the token was read again
   * once), or SlackNetworkError when no answer came (after at most one quick retry).
   */
  call(
    method: string,
    args: Readonly<Record<string, unknown>>,
    options?: SlackCallOptions,
  ): Promise<SlackApiResult>;
  /** Releases sockets; the app's close calls it after the drain. */
  close?(): void;
}

/** What a Slack client is built with besides settings; the app passes its own. */
export interface SlackClientDependencies {
  /** Where the bot token is read (SLACK_BOT_TOKEN_VAULT_PATH). */
  vault: VaultClient;
  logger: Logger;
  /** The call counter and duration histogram (registered when the app is built). */
  metrics: SlackApiMetrics;
}
export type SlackClientFactory = (settings: Settings, deps: SlackClientDependencies) => SlackClient;

/** Slack answered 429: the caller should try again after `retryAfterSeconds`. */
export class SlackRateLimitedError extends Error {
  constructor(
    readonly method: string,
    readonly retryAfterSeconds: number,
  ) {
    super(`${method} rate limited: retry after ${retryAfterSeconds} s`);
    this.name = 'SlackRateLimitedError';
  }
}

/** Slack answered `ok: false` with an error code (`channel_not_found`, `invalid_auth`). */
export class SlackApiError extends Error {
  constructor(
    readonly method: string,
    readonly code: string,
  ) {
    super(`${method} failed: ${code}`);
    this.name = 'SlackApiError';
  }
}

/** No answer from Slack (refused, reset, timed out). */
export class SlackNetworkError extends Error {
  constructor(
    readonly method: string,
    reason: string,
  ) {
    super(`${method} got no answer: ${reason}`);
    this.name = 'SlackNetworkError';
  }
}
