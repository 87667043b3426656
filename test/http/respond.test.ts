import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fixedText, sendJson, sendText, type FixedText } from '../../lib/http/respond';

/** One request to a loopback server answering with `answer`: status, headers and body as sent. */
async function answerOf(
  answer: (res: http.ServerResponse) => void,
  method = 'GET',
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  const server = http.createServer((_req, res) => {
    answer(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  try {
    return await new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) });
        });
      });
      req.setTimeout(5000, () => req.destroy(new Error('no answer in 5 s')));
      req.on('error', reject);
      req.end();
    });
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

describe('sendText', () => {
  const text = '{"text":"☕ café"}';

  it('keeps a fixed text as its UTF-8 bytes, one character a byte', () => {
    const fixed: FixedText = fixedText(text);
    expect(Buffer.from(fixed.latin1, 'latin1')).toEqual(Buffer.from(text, 'utf8'));
    expect(fixed.latin1.length).toBeGreaterThan(text.length);
  });

  it.each([
    ['text', text],
    ['a fixed text', fixedText(text)],
  ])('sends %s whole, with its length in bytes, uncached', async (_kind, body) => {
    const got = await answerOf((res) => {
      sendText(res, 201, 'application/json', body);
    });
    expect(got.status).toBe(201);
    expect(got.body.toString('utf8')).toBe(text);
    expect(got.headers).toMatchObject({
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(text)),
      'cache-control': 'no-store',
    });
  });

  it('lets headers given add to and replace its own', async () => {
    const got = await answerOf((res) => {
      sendJson(res, 429, { error: 'busy' }, { 'Retry-After': '1', 'Cache-Control': 'private' });
    });
    expect(got.status).toBe(429);
    expect(JSON.parse(got.body.toString('utf8'))).toEqual({ error: 'busy' });
    expect(got.headers).toMatchObject({
      'content-type': 'application/json; charset=utf-8',
      'retry-after': '1',
      'cache-control': 'private',
    });
  });

  it('sends no body to HEAD, but the length GET would have', async () => {
    const got = await answerOf((res) => {
      sendText(res, 200, 'text/plain', fixedText(text));
    }, 'HEAD');
    expect(got.body.length).toBe(0);
    expect(got.headers['content-length']).toBe(String(Buffer.byteLength(text)));
  });
});
