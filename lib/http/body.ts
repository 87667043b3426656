import type { IncomingMessage } from 'node:http';

/** Whether a request carries a body at all (RFC 9112 §6.3): a length above 0, or chunks. */
export function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** How reading a body ended: its bytes, or why there are none. */
export type BodyRead =
  | { ok: true; bytes: Buffer }
  | { ok: false; reason: 'too_large' }
  | { ok: false; reason: 'aborted' };

/**
 * Reads a request's body as raw bytes, at most `limitBytes`, nothing parsed. Past the limit it stops
 * keeping bytes at once and answers `too_large` (the caller refuses and lets the rest drain). With
 * `keep` false the bytes are counted and dropped: a route that takes no body still lets one pass.
 */
export function readBody(
  req: IncomingMessage,
  limitBytes: number,
  keep: boolean,
): Promise<BodyRead> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let received = 0;
    const finish = (result: BodyRead) => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('aborted', onAborted);
      req.off('error', onAborted);
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      received += chunk.length;
      if (received > limitBytes) {
        finish({ ok: false, reason: 'too_large' });
        return;
      }
      if (keep) chunks.push(chunk);
    };
    const onEnd = () => {
      const [only] = chunks;
      finish({ ok: true, bytes: chunks.length === 1 && only ? only : Buffer.concat(chunks) });
    };
    const onAborted = () => {
      finish({ ok: false, reason: 'aborted' });
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('aborted', onAborted);
    req.on('error', onAborted);
  });
}
