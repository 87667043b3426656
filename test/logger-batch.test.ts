import { batchedSink, createLogger } from '../lib/logger';

/** The stdout sink's batching: one write a turn of the event loop, in order, bounded. */
describe('batchedSink', () => {
  const turn = () => new Promise((resolve) => setImmediate(resolve));

  it('writes the lines of one turn together, in order, at the next turn', async () => {
    const writes: string[] = [];
    const { sink } = batchedSink((text) => writes.push(text));
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
    const { sink } = batchedSink((text) => writes.push(text));
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

  it('writes at once past its bound, and flush() writes what is held', async () => {
    const writes: string[] = [];
    const { sink, flush } = batchedSink((text) => writes.push(text), 10);
    sink('12345');
    expect(writes).toEqual([]);
    sink('6789');
    // 11 bytes with their line ends: over 10, written now.
    expect(writes).toEqual(['12345\n6789\n']);
    sink('held');
    flush();
    expect(writes).toEqual(['12345\n6789\n', 'held\n']);
    flush();
    await turn();
    expect(writes).toHaveLength(2);
  });

  it('writes an urgent line at once, after the lines waiting before it', () => {
    const writes: string[] = [];
    const { sink } = batchedSink((text) => writes.push(text));
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
