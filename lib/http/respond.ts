import type { ServerResponse as Response } from 'node:http';

export const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';

type Headers = Readonly<Record<string, string>>;

/**
 * Sends a complete answer that no cache keeps, through Node's own response API: the body is
 * already known, so Express's send() (freshness, ETag, type guessing) adds only cost. Node omits
 * the body itself for HEAD. An answer sent again and again can be encoded once and given as bytes.
 */
export function sendText(
  res: Response,
  status: number,
  contentType: string,
  body: string | Buffer,
  headers: Headers = {},
): void {
  res.writeHead(status, {
    'Content-Type': contentType,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(body);
}

/** Sends a value as JSON. */
export function sendJson(
  res: Response,
  status: number,
  body: unknown,
  headers: Headers = {},
): void {
  sendText(res, status, JSON_CONTENT_TYPE, JSON.stringify(body), headers);
}
