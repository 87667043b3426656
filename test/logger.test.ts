import { batchedSink, createLogger, LOG_LEVELS, withFields, type LogLevel } from '../lib/logger';
import { Redactor } from '../lib/redactor';
import { runInContext } from '../lib/request-context';

/** What createLogger writes: one JSON object a line, at or above its level (test/logger-batch.test.ts has which are urgent). */
function logged(level: LogLevel, redactor?: Redactor) {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger(level, (line) => lines.push(JSON.parse(line)), redactor);
  return { logger, lines, levels: () => lines.map((entry) => entry.level) };
}

const writeEach = (logger: ReturnType<typeof createLogger>) => {
  for (const level of LOG_LEVELS) logger[level](`${level} line`);
};

describe('createLogger', () => {
  it('names its levels from the least to the most severe', () => {
    expect(LOG_LEVELS).toEqual(['debug', 'info', 'warn', 'error']);
  });

  it.each<[LogLevel, string[]]>([
    ['debug', ['debug', 'info', 'warn', 'error']],
    ['info', ['info', 'warn', 'error']],
    ['warn', ['warn', 'error']],
    ['error', ['error']],
  ])('at %s writes %j and drops the rest', (level, written) => {
    const { logger, levels } = logged(level);
    writeEach(logger);
    expect(levels()).toEqual(written);
  });

  it('writes the time, the level, the message and the fields, one object a line', () => {
    const { logger, lines } = logged('debug');
    const before = Date.now();
    logger.info('pool ready', { size: 3 });
    logger.warn('bare');
    const [entry, bare] = lines as [Record<string, unknown>, Record<string, unknown>];
    expect(Object.keys(entry)).toEqual(['time', 'level', 'msg', 'size']);
    expect(entry).toMatchObject({ level: 'info', msg: 'pool ready', size: 3 });
    expect(entry.time).toBe(new Date(Date.parse(entry.time as string)).toISOString());
    expect(Date.parse(entry.time as string)).toBeGreaterThanOrEqual(before);
    expect(bare).toEqual({ time: bare.time, level: 'warn', msg: 'bare' });
  });

  it('gives each line the clock’s time to the millisecond, formatted once a millisecond', () => {
    jest.useFakeTimers({ now: Date.parse('2026-12-07T10:00:00.000Z') });
    try {
      const { logger, lines } = logged('info');
      logger.info('a');
      logger.info('b');
      jest.setSystemTime(Date.parse('2026-12-07T10:00:00.001Z'));
      logger.info('c');
      jest.setSystemTime(Date.parse('2026-12-07T10:00:01.001Z'));
      logger.info('d');
      expect(lines.map((entry) => entry.time)).toEqual([
        '2026-12-07T10:00:00.000Z',
        '2026-12-07T10:00:00.000Z',
        '2026-12-07T10:00:00.001Z',
        '2026-12-07T10:00:01.001Z',
      ]);
    } finally {
      jest.useRealTimers();
    }
  });

  it('adds the request’s ids, unless the fields name them', () => {
    const { logger, lines } = logged('debug');
    runInContext({ requestId: 'r-1', traceId: 't-1' }, () => {
      logger.debug('one');
      logger.debug('two', { requestId: 'r-2' });
    });
    expect(lines[0]).toMatchObject({ requestId: 'r-1', traceId: 't-1' });
    expect(lines[1]).toMatchObject({ requestId: 'r-2', traceId: 't-1' });
  });

  it('removes every known secret from each line with a redactor, and writes lines as they are without', () => {
    const redactor = new Redactor();
    redactor.add('s3cret-value');
    const { logger, lines } = logged('debug', redactor);
    logger.error('token s3cret-value refused', { header: 'Bearer s3cret-value' });
    expect(JSON.stringify(lines[0])).not.toContain('s3cret-value');
    const plain = logged('debug');
    plain.logger.error('token s3cret-value refused');
    expect(plain.lines[0]?.msg).toBe('token s3cret-value refused');
  });
});

describe('withFields', () => {
  it('adds its fields to every line at each level, the line’s own fields winning', () => {
    const { logger, lines } = logged('debug');
    const bound = withFields(logger, { eventId: 'e-1', attempt: 1 });
    writeEach(bound);
    bound.info('again', { attempt: 2 });
    expect(lines.map((entry) => [entry.level, entry.msg, entry.eventId, entry.attempt])).toEqual([
      ['debug', 'debug line', 'e-1', 1],
      ['info', 'info line', 'e-1', 1],
      ['warn', 'warn line', 'e-1', 1],
      ['error', 'error line', 'e-1', 1],
      ['info', 'again', 'e-1', 2],
    ]);
  });
});

describe('batchedSink, its bound', () => {
  it('holds up to 64 KiB less a byte, and writes at once at 64 KiB', () => {
    const writes: string[] = [];
    const { sink, flush } = batchedSink((bytes) => writes.push(bytes.toString()));
    // With its line end, 65535 bytes: held.
    sink('x'.repeat(65534));
    expect(writes).toEqual([]);
    flush();
    expect(writes).toHaveLength(1);
    // 65536 bytes: written now.
    sink('y'.repeat(65535));
    expect(writes).toHaveLength(2);
  });

  it('writes at once when the bytes held reach the bound exactly', () => {
    const writes: string[] = [];
    const { sink } = batchedSink((bytes) => writes.push(bytes.toString()), 10);
    sink('1234');
    sink('5678');
    expect(writes).toEqual(['1234\n5678\n']);
  });
});

describe('createLogger without a sink', () => {
  // process.stdout's write, taken over for the test's own lines only (nothing else writes then).
  async function stdoutWrites(fn: (writes: readonly string[]) => void): Promise<string[]> {
    const writes: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = (chunk: string | Uint8Array) => writes.push(chunk.toString()) > 0;
    try {
      fn(writes);
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.stdout.write = write;
    }
    return writes;
  }

  it('writes to stdout, the lines of one turn in one write, and what is held when the process exits', async () => {
    const exitListeners = process.listenerCount('exit');
    const logger = createLogger('info');
    const turn = await stdoutWrites(() => {
      logger.info('one');
      logger.info('two');
    });
    expect(turn).toHaveLength(1);
    expect(turn[0]!.split('\n').map((line) => (line === '' ? '' : JSON.parse(line).msg))).toEqual([
      'one',
      'two',
      '',
    ]);
    expect(process.listenerCount('exit')).toBe(exitListeners + 1);
    let atExit: string[] = [];
    await stdoutWrites((writes) => {
      logger.info('last');
      const flush = process.listeners('exit').at(-1) as () => void;
      flush();
      atExit = [...writes];
    });
    expect(atExit).toHaveLength(1);
    expect(JSON.parse(atExit[0]!)).toMatchObject({ msg: 'last' });
    expect(process.listenerCount('exit')).toBe(exitListeners + 1);
  });
});
