import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A loopback stand-in for Slack's Web API, answering as Slack documents it (docs.slack.dev,
 * "Web API basics" and "Rate limits"):
 * - `POST /api/<method>`, the token as `Authorization: Bearer <token>` or, in a form body, a
 *   `token` field; no token → `not_authed`, a token not in `tokens` → `invalid_auth`;
 * - bodies `application/x-www-form-urlencoded` (values as Slack reads them: strings) or
 *   `application/json` (the token then only in the header); another type → `invalid_post_type`,
 *   JSON that does not parse → `invalid_json`;
 * - every answer HTTP 200 `{"ok":true,…}` or `{"ok":false,"error":"<code>"}`, except a rate limit:
 *   HTTP 429 with `Retry-After: <seconds>` and `{"ok":false,"error":"ratelimited"}`.
 * What a method answers is set per method (`answer`), with a delay, for the next N calls or all;
 * every call is recorded (method, token, parsed arguments, the status answered).
 */

export type SlackApiAnswer =
  /** 200 `{"ok":true, ...fields}`; chat.postMessage by default also gets `channel`, `ts`, `message`. */
  | { kind: 'ok'; fields?: Record<string, unknown> }
  /** 200 `{"ok":false,"error":code}` (`channel_not_found`, `invalid_auth`…). */
  | { kind: 'error'; error: string }
  /** 429 with `Retry-After: retryAfterSeconds` (as text: a test may send a bad value). */
  | { kind: 'rate_limited'; retryAfter: string }
  /** Another HTTP status with a body, as a proxy in the way might answer. */
  | { kind: 'status'; status: number; body: string }
  /** The connection destroyed without an answer. */
  | { kind: 'reset' };

export interface SlackApiRule {
  answer: SlackApiAnswer;
  /** Wait this long before answering. */
  delayMs?: number;
  /** For the next `times` calls of the method only; without it, for every call. */
  times?: number;
}

export interface SlackApiCall {
  method: string;
  /** The token the call carried (header, else form field), if any. */
  token: string | undefined;
  /** The arguments as Slack reads them: form fields as strings, or the JSON body's fields. */
  args: Record<string, unknown>;
  contentType: string;
  /** The HTTP status answered (0 for a reset). */
  status: number;
}

export interface SlackApiStandIn {
  /** The Web API base URL, `http://127.0.0.1:<port>/api/` (SLACK_API_URL). */
  readonly url: string;
  /** Tokens Slack accepts. */
  readonly tokens: Set<string>;
  /** Every call received, in order. */
  readonly calls: SlackApiCall[];
  /** Sets what `method` answers (a `times` rule is used before the lasting one). */
  answer(method: string, rule: SlackApiRule): void;
  /** The next `times` calls of `method` answer 429 with Retry-After; then as before. */
  rateLimit(method: string, times: number, retryAfterSeconds: number): void;
  /** The calls of one method. */
  callsOf(method: string): SlackApiCall[];
  /** Forgets calls and rules (tokens stay). */
  reset(): void;
  close(): Promise<void>;
}

/** Largest request body read: Slack's own limits are far below it. */
const MAX_BODY_BYTES = 1024 * 1024;
type Reply = [status: number, body: unknown, headers?: Record<string, string>] | 'reset';

const METHOD_PATH = /^\/api\/([A-Za-z0-9.]+)$/;

function parseBody(contentType: string, body: string): Record<string, unknown> | string {
  const type = contentType.split(';')[0]!.trim().toLowerCase();
  if (type === 'application/x-www-form-urlencoded') {
    return Object.fromEntries(new URLSearchParams(body));
  }
  if (type === 'application/json') {
    try {
      const parsed: unknown = JSON.parse(body === '' ? '{}' : body);
      return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)
        ? (parsed as Record<string, unknown>)
        : 'invalid_json';
    } catch {
      return 'invalid_json';
    }
  }
  return 'invalid_post_type';
}

function bearer(header: string | undefined): string | undefined {
  const match = /^Bearer (\S+)$/.exec(header ?? '');
  return match?.[1];
}

export async function startSlackApiStandIn(
  tokens: Iterable<string> = [],
): Promise<SlackApiStandIn> {
  const rules = new Map<string, SlackApiRule[]>();
  const calls: SlackApiCall[] = [];
  const accepted = new Set(tokens);
  const sockets = new Set<Socket>();
  let ts = 1_700_000_000;

  const ruleFor = (method: string): SlackApiRule | undefined => {
    const list = rules.get(method) ?? [];
    const once = list.find((rule) => rule.times !== undefined && rule.times > 0);
    if (once !== undefined) {
      once.times! -= 1;
      return once;
    }
    return list.find((rule) => rule.times === undefined);
  };

  const okBody = (method: string, args: Record<string, unknown>, fields = {}) => {
    if (method !== 'chat.postMessage') return { ok: true, ...fields };
    ts += 1;
    const stamp = `${ts}.000100`;
    return {
      ok: true,
      channel: args.channel,
      ts: stamp,
      message: { type: 'message', text: args.text, ts: stamp, thread_ts: args.thread_ts },
      ...fields,
    };
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on('end', () => {
      const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
        res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', ...headers });
        res.end(typeof body === 'string' ? body : JSON.stringify(body));
      };
      const match = METHOD_PATH.exec(new URL(req.url ?? '/', 'http://x').pathname);
      if (req.method !== 'POST' || match === null) {
        send(404, { ok: false, error: 'unknown_method' });
        return;
      }
      if (size > MAX_BODY_BYTES) {
        send(413, { ok: false, error: 'request_too_large' });
        return;
      }
      const method = match[1]!;
      const contentType = req.headers['content-type'] ?? '';
      const parsed = parseBody(contentType, Buffer.concat(chunks).toString('utf8'));
      const args = typeof parsed === 'string' ? {} : parsed;
      const isForm = contentType.startsWith('application/x-www-form-urlencoded');
      const formToken = isForm && typeof args.token === 'string' ? args.token : undefined;
      const token = bearer(req.headers.authorization) ?? formToken;
      const call: SlackApiCall = { method, token, args, contentType, status: 0 };
      calls.push(call);
      const rule = typeof parsed === 'string' ? undefined : ruleFor(method);
      /** Slack's answer to this call: status, body and headers, or a reset connection. */
      const reply = (): Reply => {
        if (typeof parsed === 'string') return [200, { ok: false, error: parsed }];
        if (token === undefined) return [200, { ok: false, error: 'not_authed' }];
        if (!accepted.has(token)) return [200, { ok: false, error: 'invalid_auth' }];
        const what = rule?.answer ?? { kind: 'ok' };
        switch (what.kind) {
          case 'ok':
            return [200, okBody(method, args, what.fields)];
          case 'error':
            return [200, { ok: false, error: what.error }];
          case 'rate_limited':
            return [429, { ok: false, error: 'ratelimited' }, { 'Retry-After': what.retryAfter }];
          case 'status':
            return [what.status, what.body];
          case 'reset':
            return 'reset';
        }
      };
      const answer = (): void => {
        const what = reply();
        if (what === 'reset') {
          call.status = 0;
          req.socket.destroy();
        } else {
          call.status = what[0];
          send(...what);
        }
      };
      const delayMs = rule?.delayMs ?? 0;
      if (delayMs === 0) {
        answer();
        return;
      }
      const timer = setTimeout(answer, delayMs);
      // A caller that gave up (or the stand-in closing) leaves no timer behind.
      res.on('close', () => {
        clearTimeout(timer);
      });
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => {
      sockets.delete(socket);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const standIn: SlackApiStandIn = {
    url: `http://127.0.0.1:${port}/api/`,
    tokens: accepted,
    calls,
    answer(method, rule) {
      const list = rules.get(method) ?? [];
      rules.set(
        method,
        rule.times === undefined
          ? [...list.filter((r) => r.times !== undefined), rule]
          : [...list, rule],
      );
    },
    rateLimit(method, times, retryAfterSeconds) {
      standIn.answer(method, {
        answer: { kind: 'rate_limited', retryAfter: String(retryAfterSeconds) },
        times,
      });
    },
    callsOf: (method) => calls.filter((call) => call.method === method),
    reset() {
      calls.length = 0;
      rules.clear();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => {
          resolve();
        });
      }),
  };
  return standIn;
}
