import type { Response } from '@google-cloud/functions-framework';

/** Sends a JSON answer that no cache keeps; Express omits the body itself for HEAD. */
export function sendJson(
  res: Response,
  status: number,
  body: unknown,
  headers: Readonly<Record<string, string>> = {},
): void {
  res
    .status(status)
    .set({ 'Cache-Control': 'no-store', ...headers })
    .json(body);
}
