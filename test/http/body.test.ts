import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { hasBody, readBody, ReadDeadlines, type BodyRead } from '../../lib/http/body';
import { eventually } from '../../testing/tools';

const LONG_MS = 60_000;

describe('hasBody', () => {
  const request = (headers: http.IncomingHttpHeaders) =>
    Object.assign(new http.IncomingMessage(new net.Socket()), { headers });

  it.each([
    [{}, false],
    [{ 'content-length': '0' }, false],
    [{ 'content-length': '1' }, true],
    [{ 'transfer-encoding': 'chunked' }, true],
    [{ 'transfer-encoding': 'chunked', 'content-length': '0' }, true],
  ])('%j → %s', (headers, expected) => {
    expect(hasBody(request(headers))).toBe(expected);
  });
});

/**
 * A server on loopback whose requests are read by readBody with the given arguments; `send` writes
 * raw bytes on a new connection and resolves with what readBody made of the request once read.
 */
async function reader(limitBytes: number, keep: boolean, timeoutMs = LONG_MS) {
  const reads: Promise<BodyRead>[] = [];
  const state = { receivedBytes: 0, listenersLeft: [] as number[] };
  const events = ['data', 'end', 'aborted', 'error'] as const;
  const deadlines = new ReadDeadlines(timeoutMs);
  const server = http.createServer((req, res) => {
    allocations.length = 0;
    const before = events.map((event) => req.listenerCount(event));
    req.on('data', (data: Buffer) => (state.receivedBytes += data.length));
    const read = readBody(req, limitBytes, keep, deadlines);
    reads.push(read);
    void read.then(() => {
      // Counted without the test's own 'data' listener.
      state.listenersLeft = events.map((event, i) => req.listenerCount(event) - before[i]!);
      state.listenersLeft[0]! -= 1;
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const sockets: net.Socket[] = [];
  /** Writes raw bytes on a new connection; once the server reads the request, what it made of it. */
  const start = async (
    ...parts: string[]
  ): Promise<{ read: Promise<BodyRead>; socket: net.Socket }> => {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    sockets.push(socket);
    const before = reads.length;
    for (const part of parts) socket.write(part);
    await eventually(() => reads.length > before);
    return { read: reads[before]!, socket };
  };
  const send = async (...parts: string[]) => {
    const { read, socket } = await start(...parts);
    return { read: await read, socket };
  };
  const close = () => {
    for (const socket of sockets) socket.destroy();
    server.closeAllConnections();
    server.close();
  };
  return { start, send, close, state };
}

const head = (headers: string) => `POST / HTTP/1.1\r\nHost: x\r\n${headers}\r\n`;
const chunk = (data: string) => `${Buffer.byteLength(data).toString(16)}\r\n${data}\r\n`;
const bytesOf = (read: BodyRead): Buffer => {
  if (!read.ok) throw new Error(`not read: ${read.reason}`);
  return read.bytes;
};

/** The sizes of the buffers allocated while a request is read: its body's capacity, grown. */
const allocations: number[] = [];

describe('readBody', () => {
  let close: (() => void) | undefined;
  beforeEach(() => {
    const allocate = Buffer.allocUnsafe.bind(Buffer);
    jest.spyOn(Buffer, 'allocUnsafe').mockImplementation((size) => {
      allocations.push(size);
      return allocate(size);
    });
  });
  afterEach(() => {
    jest.restoreAllMocks();
    close?.();
  });

  it('reads a Content-Length body into one buffer of that length', async () => {
    const served = await reader(1024 * 1024, true);
    close = served.close;
    // In two parts, the second sent once the first is read: a buffer grown on the way would show.
    const { read, socket } = await served.start(head('Content-Length: 5000\r\n'), 'a'.repeat(3000));
    await eventually(() => served.state.receivedBytes === 3000);
    socket.write('b'.repeat(2000));
    const bytes = bytesOf(await read);
    expect(bytes.toString()).toBe('a'.repeat(3000) + 'b'.repeat(2000));
    // Sized by Content-Length at once, never grown.
    expect(allocations).toEqual([5000]);
    expect(served.state.listenersLeft).toEqual([0, 0, 0, 0]);
  });

  it('refuses a body one byte past the limit', async () => {
    const served = await reader(9_999, true);
    close = served.close;
    const { read } = await served.send(head('Content-Length: 10000\r\n'), 'x'.repeat(10_000));
    expect(read).toEqual({ ok: false, reason: 'too_large' });
    // Nothing more is copied or counted once the read is over.
    expect(served.state.listenersLeft).toEqual([0, 0, 0, 0]);
  });

  it('keeps a chunked body whole as its buffer grows: small chunks, then one large chunk', async () => {
    const small = Array.from({ length: 300 }, (_, i) => `chunk-${i};`);
    const large = 'L'.repeat(20_000);
    const served = await reader(1024 * 1024, true);
    close = served.close;
    const { read } = await served.send(
      head('Transfer-Encoding: chunked\r\n'),
      ...small.map(chunk),
      chunk(large),
      '0\r\n\r\n',
    );
    const bytes = bytesOf(read);
    expect(bytes.toString()).toBe(small.join('') + large);
    // It grows with what arrives, not to the limit: a chunk past twice the buffer, to fit at once.
    expect(allocations).toEqual([4096, bytes.length]);
  });

  it('starts a chunked body in a 4 KiB buffer, not one of the limit, and doubles it', async () => {
    const served = await reader(1024 * 1024, true);
    close = served.close;
    const small = await served.send(
      head('Transfer-Encoding: chunked\r\n'),
      chunk('{}'),
      '0\r\n\r\n',
    );
    expect(bytesOf(small.read).toString()).toBe('{}');
    expect(allocations).toEqual([4096]);
    // Filled exactly: not grown.
    const full = await served.send(
      head('Transfer-Encoding: chunked\r\n'),
      chunk('f'.repeat(4096)),
      '0\r\n\r\n',
    );
    expect(bytesOf(full.read).length).toBe(4096);
    expect(allocations).toEqual([4096]);
    // Many small chunks past 4 KiB: doubled once, so a body sent in small chunks is copied
    // O(its size) times, not once a chunk.
    const pieces = Array.from({ length: 600 }, (_, i) => String(i).padStart(10, '0'));
    const doubled = await served.send(
      head('Transfer-Encoding: chunked\r\n'),
      pieces.map(chunk).join(''),
      '0\r\n\r\n',
    );
    expect(bytesOf(doubled.read).toString()).toBe(pieces.join(''));
    expect(allocations).toEqual([4096, 8192]);
  });

  it('cuts a chunked body at the limit', async () => {
    const served = await reader(100, true);
    close = served.close;
    const { read } = await served.send(
      head('Transfer-Encoding: chunked\r\n'),
      chunk('a'.repeat(60)),
      chunk('b'.repeat(41)),
      '0\r\n\r\n',
    );
    expect(read).toEqual({ ok: false, reason: 'too_large' });
  });

  it('counts and drops a body it does not keep, within the same limit', async () => {
    const served = await reader(100, false);
    close = served.close;
    const dropped = await served.send(head('Content-Length: 100\r\n'), 'y'.repeat(100));
    expect(dropped.read).toEqual({ ok: true, bytes: Buffer.alloc(0) });
    const tooLarge = await served.send(head('Content-Length: 101\r\n'), 'y'.repeat(101));
    expect(tooLarge.read).toEqual({ ok: false, reason: 'too_large' });
  });

  it('gives up on a body still unfinished at timeoutMs', async () => {
    const served = await reader(100, true, 50);
    close = served.close;
    const { read } = await served.send(head('Content-Length: 10\r\n'), 'abc');
    expect(read).toEqual({ ok: false, reason: 'timeout' });
  });

  it('ends the read when the client goes away mid-body', async () => {
    const served = await reader(100, true);
    close = served.close;
    const { read, socket } = await served.start(head('Content-Length: 10\r\n'), 'abc');
    socket.destroy();
    expect(await read).toEqual({ ok: false, reason: 'aborted' });
  });
});

describe('ReadDeadlines', () => {
  beforeEach(() => {
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
  });
  afterEach(() => {
    jest.useRealTimers();
  });

  it('runs a deadline out at exactly timeoutMs, once', () => {
    const deadlines = new ReadDeadlines(100);
    const fired: string[] = [];
    deadlines.start(() => fired.push('a'));
    jest.advanceTimersByTime(99);
    expect(fired).toEqual([]);
    jest.advanceTimersByTime(1);
    expect(fired).toEqual(['a']);
    jest.advanceTimersByTime(1000);
    expect(fired).toEqual(['a']);
  });

  it('forgets a cancelled deadline and times the next one from its own start', () => {
    const deadlines = new ReadDeadlines(100);
    const fired: string[] = [];
    const cancelFirst = deadlines.start(() => fired.push('first'));
    jest.advanceTimersByTime(40);
    deadlines.start(() => fired.push('second'));
    cancelFirst();
    jest.advanceTimersByTime(60);
    expect(fired).toEqual([]);
    jest.advanceTimersByTime(39);
    expect(fired).toEqual([]);
    jest.advanceTimersByTime(1);
    expect(fired).toEqual(['second']);
  });

  it('runs out every deadline due at once, in the order set, and none due later', () => {
    const deadlines = new ReadDeadlines(100);
    const fired: string[] = [];
    deadlines.start(() => fired.push('a'));
    deadlines.start(() => fired.push('b'));
    jest.advanceTimersByTime(10);
    deadlines.start(() => fired.push('c'));
    // One timer for all three: the point of sharing it.
    expect(jest.getTimerCount()).toBe(1);
    jest.advanceTimersByTime(90);
    expect(fired).toEqual(['a', 'b']);
    jest.advanceTimersByTime(10);
    expect(fired).toEqual(['a', 'b', 'c']);
  });

  it('arms again for a deadline set after the others ran out', () => {
    const deadlines = new ReadDeadlines(100);
    const fired: string[] = [];
    deadlines.start(() => fired.push('a'));
    jest.advanceTimersByTime(100);
    deadlines.start(() => fired.push('b'));
    jest.advanceTimersByTime(99);
    expect(fired).toEqual(['a']);
    jest.advanceTimersByTime(1);
    expect(fired).toEqual(['a', 'b']);
  });

  it('does not keep the process alive', () => {
    jest.useRealTimers();
    const before = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const cancel = new ReadDeadlines(60_000).start(() => undefined);
    try {
      // An unreferenced timer is not among the resources that keep the event loop running.
      expect(process.getActiveResourcesInfo().filter((r) => r === 'Timeout')).toHaveLength(before);
    } finally {
      cancel();
    }
  });
});
