import { batchedSink, createLogger } from '../lib/logger';

/** The stdout sink's batching: one write a turn of the event loop, in order, bounded. */
describe('batchedSink', () => {
  const turn = () => new Promise((resolve) => setImmediate(resolve));

  it('writes the lines of one turn together, in order, at the next turn', async () => {
    const writes: string[] = [];
    const { sink } = batchedSink((bytes) => writes.push(bytes.toString()));
    sink('{"n":1}');
    sink('{"n":2}');
    expect(writes).toEqual([]);
    await turn();
    expect(writes).toEqual(['{"n":1}\n{"n":2}\n']);
    sink('{"n":3}');
    await turn();
    expect(writes).toEqual(['{"n":1}\n{"n":2}\n', '{"n":3}\n']);
  });

  it('schedules one write a turn: a line logged in the turn it is written waits for the next', async () => {
    const writes: string[] = [];
    const { sink } = batchedSink((bytes) => writes.push(bytes.toString()));
    sink('{"n":1}');
    // Runs in the same turn as the scheduled write, after it.
    setImmediate(() => {
      sink('{"n":3}');
    });
    sink('{"n":2}');
    await turn();
    expect(writes).toEqual(['{"n":1}\n{"n":2}\n']);
    await turn();
    expect(writes).toEqual(['{"n":1}\n{"n":2}\n', '{"n":3}\n']);
  });

  it('writes what is held before a line that would not fit, and flush() writes what is held', async () => {
    const writes: string[] = [];
    const { sink, flush } = batchedSink((bytes) => writes.push(bytes.toString()), 10);
    sink('12345');
    expect(writes).toEqual([]);
    // 6 + 5 bytes with their line ends: over 10, so the 6 held go first.
    sink('6789');
    expect(writes).toEqual(['12345\n']);
    sink('ab');
    flush();
    expect(writes).toEqual(['12345\n', '6789\nab\n']);
    flush();
    await turn();
    expect(writes).toHaveLength(2);
  });

  it('counts bytes, not characters, and writes a line longer than its bound alone', () => {
    const writes: string[] = [];
    const { sink } = batchedSink((bytes) => writes.push(bytes.toString()), 10);
    // 3 characters, 9 bytes with the line end.
    sink('☕☕é');
    sink('x');
    expect(writes).toEqual(['☕☕é\n']);
    sink('0123456789');
    expect(writes).toEqual(['☕☕é\n', 'x\n', '0123456789\n']);
  });

  it('gives each write bytes of its own, which later lines do not change', () => {
    const writes: Buffer[] = [];
    const { sink, flush } = batchedSink((bytes) => writes.push(bytes), 10);
    sink('first');
    flush();
    sink('later');
    flush();
    expect(writes.map(String)).toEqual(['first\n', 'later\n']);
  });

  it('writes an urgent line at once, after the lines waiting before it', () => {
    const writes: string[] = [];
    const { sink } = batchedSink((bytes) => writes.push(bytes.toString()));
    sink('access');
    sink('refused', true);
    expect(writes).toEqual(['access\nrefused\n']);
  });

  it('is told by the logger that warnings and errors are urgent, info and debug not', () => {
    const seen: [string, boolean | undefined][] = [];
    const logger = createLogger('debug', (line, urgent) =>
      seen.push([(JSON.parse(line) as { level: string }).level, urgent]),
    );
    logger.debug('d');
    logger.info('i');
    logger.warn('w');
    logger.error('e');
    expect(seen).toEqual([
      ['debug', false],
      ['info', false],
      ['warn', true],
      ['error', true],
    ]);
  });
});
