import type { ServerResponse as Response } from 'node:http';

export const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';

type Headers = Readonly<Record<string, string>>;

/** An answer sent again and again: its text, with its length in bytes counted once. */
export interface FixedText {
  readonly text: string;
  readonly byteLength: number;
}

export function fixedText(text: string): FixedText {
  return { text, byteLength: Buffer.byteLength(text) };
}

/**
 * Sends a complete answer that no cache keeps, through Node's own response API: the body is
 * already known, so Express's send() (freshness, ETag, type guessing) adds only cost. Node omits
 * the body itself for HEAD. The body goes as text, never as bytes: Node then sends the head and
 * the body in one write, where bytes would be gathered with the head into a writev.
 */
export function sendText(
  res: Response,
  status: number,
  contentType: string,
  body: string | FixedText,
  headers: Headers = {},
): void {
  const fixed = typeof body !== 'string';
  res.writeHead(status, {
    'Content-Type': contentType,
    'Content-Length': fixed ? body.byteLength : Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(fixed ? body.text : body);
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
