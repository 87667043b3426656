import type { ServerResponse as Response } from 'node:http';

export const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';

type Headers = Readonly<Record<string, string>>;

/**
 * An answer sent again and again, kept as its UTF-8 bytes one character a byte (a latin1 string):
 * Node copies such a string into the socket behind the head, in one write. Bytes would go in a
 * writev of their own beside the head, and text with a character past ASCII (a bullet, an emoji)
 * would be encoded to UTF-8 again on every answer.
 */
export interface FixedText {
  readonly latin1: string;
}

export function fixedText(text: string): FixedText {
  return { latin1: Buffer.from(text, 'utf8').toString('latin1') };
}

/**
 * Sends a complete answer that no cache keeps, through Node's own response API: the body is
 * already known, so Express's send() (freshness, ETag, type guessing) adds only cost. Node omits
 * the body itself for HEAD.
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
    'Content-Length': fixed ? body.latin1.length : Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    ...headers,
  });
  if (fixed) res.end(body.latin1, 'latin1');
  else res.end(body);
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
