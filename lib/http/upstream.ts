import http from 'node:http';
import type https from 'node:https';
import { performance } from 'node:perf_hooks';
import type nodeFetch from 'node-fetch';
import { UpstreamError, reasonOf } from '../errors';
import { componentHealth, type ComponentHealth } from '../health';
import { currentContext } from '../request-context';

/** Health bodies are a few hundred bytes; anything far larger is not a health endpoint. */
const MAX_BODY_BYTES = 64 * 1024;
/** Idle keep-alive sockets are dropped before typical server idle timeouts close them under us. */
const FREE_SOCKET_TIMEOUT_MS = 4000;

const CONNECTION_RESET = 'connection reset';

export interface UpstreamResponse {
  status: number;
  /** The answer's headers, names in lower case (a repeated one's values joined by `, `). */
  headers: Readonly<Record<string, string>>;
  body: Buffer;
}

/**
 * node-fetch, loaded by the first request to an upstream rather than at start: it brings http,
 * https (and TLS), zlib and streams, which a cold start would otherwise pay for before its first
 * answer.
 */
export function fetchOnFirstUse(): typeof nodeFetch {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('node-fetch') as { default: typeof nodeFetch }).default;
}

/** The id of the request being handled, as the header upstreams record; none outside a request. */
function requestIdHeader(): Record<string, string> {
  const context = currentContext();
  return context === undefined ? {} : { 'X-Request-ID': context.requestId };
}

/** Turns the HTTP status of a health endpoint into a reason it is unusable, or undefined if usable. */
export type StatusJudge = (status: number) => string | undefined;

/** A reason a person can act on, built from the error's kind only: never its message or a body. */
export function describeFailure(error: unknown, host: string, timeoutMs: number): string {
  const { name, type, code } = (error ?? {}) as { name?: string; type?: string; code?: string };
  if (name === 'AbortError' || name === 'TimeoutError' || type === 'aborted') {
    return `timeout after ${timeoutMs} ms`;
  }
  if (type === 'max-size') return 'response too large';
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_FAIL':
      return `DNS lookup failed for ${host}`;
    case 'ECONNRESET':
    case 'EPIPE':
      return CONNECTION_RESET;
    case 'ETIMEDOUT':
      return 'connection timed out';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `no route to ${host}`;
    case 'EPROTO':
      return 'TLS handshake failed';
    case undefined:
      return 'request failed';
  }
  if (code.startsWith('HPE_')) return 'invalid HTTP response';
  if (/CERT|SELF_SIGNED|ERR_TLS/.test(code)) return `TLS certificate rejected (${code})`;
  return `network error (${code})`;
}

/** node-fetch's headers as a plain object. */
function headersOf(headers: { forEach(fn: (value: string, name: string) => void): void }) {
  const plain: Record<string, string> = {};
  headers.forEach((value, name) => {
    plain[name] = value;
  });
  return plain;
}

/** One upstream service: its base URL, one keep-alive agent, and the health-check request. */
export class Upstream {
  private readonly baseUrl: string;
  private readonly host: string;
  private readonly agent: http.Agent;

  /** timeoutMs: each request's, unless the request names its own; maxSockets: at once (2). */
  constructor(
    baseUrl: string,
    private readonly timeoutMs: number,
    { maxSockets = 2 }: { maxSockets?: number } = {},
  ) {
    const url = new URL(baseUrl);
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.host = url.hostname;
    const options = {
      keepAlive: true,
      maxSockets,
      maxFreeSockets: 1,
      timeout: FREE_SOCKET_TIMEOUT_MS,
    };
    this.agent =
      url.protocol === 'https:'
        ? // Loaded only for an https upstream: TLS costs every cold start that loads it.
          // eslint-disable-next-line @typescript-eslint/no-require-imports
          new (require('node:https') as typeof https).Agent(options)
        : new http.Agent(options);
  }

  /**
   * One request under the base URL, body read to its end (which returns the socket to the
   * keep-alive pool), within the timeout. A GET whose connection is reset is sent once more within
   * the same timeout: a pooled connection the server has just closed fails that way, and must not
   * read as the server being down. Network failures, and the caller's `signal`, reject with an
   * UpstreamError.
   */
  async request(
    method: 'GET' | 'POST',
    path: string,
    options: {
      headers?: Record<string, string>;
      json?: unknown;
      timeoutMs?: number;
      signal?: AbortSignal | undefined;
    } = {},
  ): Promise<UpstreamResponse> {
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const deadline = AbortSignal.timeout(timeoutMs);
    const signal =
      options.signal === undefined ? deadline : AbortSignal.any([deadline, options.signal]);
    // Stryker disable next-line AssignmentOperator: attempt is only compared to 1, and 0 is not 1
    for (let attempt = 1; ; attempt += 1) {
      try {
        const response = await fetchOnFirstUse()(`${this.baseUrl}${path}`, {
          method,
          agent: this.agent,
          signal,
          redirect: 'manual',
          size: MAX_BODY_BYTES,
          headers: {
            accept: 'application/json',
            // On behalf of a request: Vault's audit log and Ory's can be joined with ours.
            ...requestIdHeader(),
            ...(options.json === undefined ? {} : { 'content-type': 'application/json' }),
            ...options.headers,
          },
          // Stryker disable next-line ConditionalExpression: JSON.stringify(undefined): no body
          ...(options.json === undefined ? {} : { body: JSON.stringify(options.json) }),
        });
        const body = Buffer.from(await response.arrayBuffer());
        return { status: response.status, headers: headersOf(response.headers), body };
      } catch (error) {
        const reason = describeFailure(error, this.host, timeoutMs);
        const retry = method === 'GET' && attempt === 1 && reason === CONNECTION_RESET;
        // Only a reset just as the signal aborts tells these apart: the attempt that would allow
        // fails at once as aborted (another reason), and no test can time a reset there.
        // Stryker disable next-line ConditionalExpression: see above
        if (!retry || signal.aborted) throw new UpstreamError(reason);
      }
    }
  }

  /** GETs `path` and judges the status; never rejects. */
  async check(path: string, judge: StatusJudge): Promise<ComponentHealth> {
    const started = performance.now();
    let problem: string | undefined;
    try {
      problem = judge((await this.request('GET', path)).status);
    } catch (error) {
      problem = reasonOf(error);
    }
    return componentHealth(performance.now() - started, problem);
  }

  close(): void {
    this.agent.destroy();
  }
}
