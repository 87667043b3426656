import { createLogger } from '../lib/logger';
import { REDACTED, Redactor } from '../lib/redactor';

describe('Redactor', () => {
  it('removes every known secret, as written and JSON-escaped, from a logged line', () => {
    const redactor = new Redactor();
    redactor.add('xoxb-secret-token-1');
    redactor.add('pass"word\\with-escapes');
    const lines: string[] = [];
    const logger = createLogger('info', (line) => lines.push(line), redactor);
    logger.error('failed with xoxb-secret-token-1', {
      error: { message: 'auth pass"word\\with-escapes refused' },
    });
    expect(lines).toHaveLength(1);
    expect(lines[0]).not.toContain('xoxb-secret-token-1');
    expect(lines[0]).not.toContain('with-escapes');
    expect(JSON.parse(lines[0]!)).toMatchObject({
      msg: `failed with ${REDACTED}`,
      error: { message: `auth ${REDACTED} refused` },
    });
  });

  it('ignores values too short to be a secret, and keeps only the newest 32', () => {
    const redactor = new Redactor();
    redactor.add('short');
    redactor.add('');
    expect(redactor.redact('a short line')).toBe('a short line');
    for (let n = 0; n < 33; n += 1) redactor.add(`rotated-secret-${String(n).padStart(2, '0')}`);
    expect(redactor.redact('rotated-secret-00 rotated-secret-32')).toBe(
      `rotated-secret-00 ${REDACTED}`,
    );
  });
});
