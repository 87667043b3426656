import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { randomBytes } from 'node:crypto';

/**
 * A loopback stand-in for Slack's response URLs (`https://hooks.slack.com/…`), answering as Slack
 * documents them (docs.slack.dev, "Handling user interaction: responding"):
 * - `POST <url>` with a JSON message (`text`, `blocks`, `response_type`, `replace_original`,
 *   `delete_original`); anything but JSON → 400 `invalid_payload`; a message with neither `text`
 *   nor `blocks` nor `delete_original` → 400 `no_text`;
 * - each URL takes 5 posts within 30 minutes of being issued: the 6th → 404 `used_url`, a post after
 *   30 minutes → 404 `expired_url`; a URL it never issued → 404 `invalid_url`;
 * - accepted → 200 `ok` (text).
 * A test may make the next posts answer something else (a 429 with Retry-After, a 500, a delay).
 */

export interface HooksPost {
  /** The path posted to (`/commands/T0001/…`). */
  path: string;
  /** The message as sent (parsed JSON). */
  body: Record<string, unknown>;
  /** The status answered. */
  status: number;
}

export interface HooksRule {
  status: number;
  body?: string;
  headers?: Record<string, string>;
  delayMs?: number;
  /** For the next `times` posts only. */
  times: number;
}

export interface HooksStandIn {
  /** Where its URLs live, `http://127.0.0.1:<port>/` (SLACK_RESPONSE_URL_PREFIX). */
  readonly prefix: string;
  /** Every post received, in order. */
  readonly posts: HooksPost[];
  /** A new response URL, issued now (or `issuedAt` epoch ms). */
  issue(kind?: 'commands' | 'actions', issuedAt?: number): string;
  /** The posts received on one URL. */
  postsTo(url: string): HooksPost[];
  /** The next `rule.times` posts answer as the rule says. */
  answer(rule: HooksRule): void;
  /** Connections open now (a client's keep-alive sockets among them). */
  connections(): number;
  reset(): void;
  close(): Promise<void>;
}

const MAX_USES = 5;
const LIFETIME_MS = 30 * 60_000;
const MAX_BODY_BYTES = 1024 * 1024;

/** A post's JSON object, or undefined when it is not one. */
function messageOf(raw: string): Record<string, unknown> | undefined {
  try {
    const parsed: unknown = JSON.parse(raw);
    return parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)
      ? (parsed as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

export async function startHooksStandIn(): Promise<HooksStandIn> {
  const issued = new Map<string, { issuedAt: number; uses: number }>();
  const posts: HooksPost[] = [];
  let rules: HooksRule[] = [];
  const sockets = new Set<Socket>();

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > MAX_BODY_BYTES) req.destroy();
      else chunks.push(chunk);
    });
    req.on('end', () => {
      const path = req.url ?? '/';
      const raw = Buffer.concat(chunks).toString('utf8');
      const body = messageOf(raw);
      const answer = judge(req.method ?? '', path, body);
      posts.push({ path, body: body ?? {}, status: answer.status });
      setTimeout(() => {
        res.writeHead(answer.status, { 'content-type': 'text/plain', ...answer.headers });
        res.end(answer.text);
      }, answer.delayMs ?? 0);
    });
  });

  /** What Slack answers a post, or what the next rule says. */
  function judge(
    method: string,
    path: string,
    body: Record<string, unknown> | undefined,
  ): { status: number; text: string; headers?: Record<string, string>; delayMs?: number } {
    const rule = rules[0];
    if (rule !== undefined) {
      rule.times -= 1;
      if (rule.times <= 0) rules = rules.slice(1);
      return {
        status: rule.status,
        text: rule.body ?? '',
        headers: rule.headers,
        delayMs: rule.delayMs,
      };
    }
    if (method !== 'POST') return { status: 405, text: 'method_not_allowed' };
    if (body === undefined) return { status: 400, text: 'invalid_payload' };
    const url = issued.get(path);
    if (url === undefined) return { status: 404, text: 'invalid_url' };
    if (Date.now() - url.issuedAt >= LIFETIME_MS) return { status: 404, text: 'expired_url' };
    if (url.uses >= MAX_USES) return { status: 404, text: 'used_url' };
    if (body.text === undefined && body.blocks === undefined && body.delete_original !== true) {
      return { status: 400, text: 'no_text' };
    }
    url.uses += 1;
    return { status: 200, text: 'ok' };
  }
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const prefix = `http://127.0.0.1:${port}/`;
  const pathOf = (url: string) => new URL(url).pathname;

  return {
    prefix,
    posts,
    issue(kind = 'commands', issuedAt = Date.now()) {
      const path = `/${kind}/T0001/${randomBytes(6).toString('hex')}/${randomBytes(12).toString('hex')}`;
      issued.set(path, { issuedAt, uses: 0 });
      return `${prefix}${path.slice(1)}`;
    },
    postsTo: (url) => posts.filter((post) => post.path === pathOf(url)),
    answer(rule) {
      rules.push({ ...rule });
    },
    connections: () => sockets.size,
    reset() {
      posts.length = 0;
      rules = [];
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => {
          resolve();
        });
      }),
  };
}
