import { parseArgs } from 'node:util';

/** The bench's and the soak's command-line options, checked: a bad value stops with a message. */
export function benchArgs(defaultSeconds: number): {
  quick: boolean;
  seconds: number;
  out?: string;
} {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      seconds: { type: 'string', default: String(defaultSeconds) },
      out: { type: 'string' },
    },
    strict: true,
  });
  const seconds = Number(values.seconds);
  if (!/^\d+$/.test(values.seconds) || seconds < 1 || seconds > 3600) {
    throw new Error(`--seconds must be a whole number from 1 to 3600, not "${values.seconds}"`);
  }
  return { quick: values.quick, seconds, ...(values.out === undefined ? {} : { out: values.out }) };
}
