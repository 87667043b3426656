import { MAX_ID_LENGTH, receivedEventOf } from '../../lib/eventing/event';

/** receivedEventOf: what a receiver takes of a parsed CloudEvent, and every refusal's reason. */

const base = {
  specversion: '1.0',
  id: 'Ev1',
  source: 'https://slack.com/teams/T1',
  type: 'com.slack.event.app_mention',
};

const errorOf = (candidate: unknown) => {
  const checked = receivedEventOf(candidate);
  return checked.ok ? undefined : checked.error;
};

describe('receivedEventOf', () => {
  it('takes a CloudEvent 1.0: identity, type, data, and the other attributes as strings', () => {
    const checked = receivedEventOf({
      ...base,
      datacontenttype: 'application/json',
      partitionkey: 'T1',
      slackretrynum: 2,
      flag: true,
      nested: { a: 1 },
      data: { text: 'hi' },
      data_base64: 'aGk=',
    });
    expect(checked).toEqual({
      ok: true,
      event: {
        id: base.id,
        source: base.source,
        type: base.type,
        data: { text: 'hi' },
        attributes: { datacontenttype: 'application/json', partitionkey: 'T1', slackretrynum: '2' },
      },
    });
  });

  it.each([null, undefined, 'text', 42, [base]])('refuses %j: not a CloudEvent', (candidate) => {
    expect(errorOf(candidate)).toBe('not a CloudEvent');
  });

  it.each([undefined, '0.3', 1])('refuses specversion %j', (specversion) => {
    expect(errorOf({ ...base, specversion })).toBe('specversion must be 1.0');
  });

  it.each([
    ['id', MAX_ID_LENGTH],
    ['source', 256],
    ['type', 128],
  ] as const)('bounds %s to 1–%i characters', (name, max) => {
    const error = `${name} must be 1 to ${max} characters`;
    expect(errorOf({ ...base, [name]: 'x'.repeat(max) })).toBeUndefined();
    expect(errorOf({ ...base, [name]: 'x'.repeat(max + 1) })).toBe(error);
    expect(errorOf({ ...base, [name]: '' })).toBe(error);
    expect(errorOf({ ...base, [name]: 7 })).toBe(error);
    const without = Object.fromEntries(Object.entries(base).filter(([key]) => key !== name));
    expect(errorOf(without)).toBe(error);
  });

  it.each([
    ['a NUL', 'Ev\u0000'],
    ['a lone high surrogate', 'Ev\uD83D'],
    ['a lone high surrogate before text', '\uD83Dx'],
    ['a lone low surrogate', 'Ev\uDE00'],
    ['a lone low surrogate after text', 'x\uDE00y'],
  ])('refuses an id with %s, naming the attribute', (_what, id) => {
    expect(errorOf({ ...base, id })).toBe('id must not hold a NUL or an unpaired surrogate');
  });

  it('takes a surrogate pair, and unstorable text only in the data', () => {
    expect(errorOf({ ...base, id: 'Ev\uD83D\uDE00' })).toBeUndefined();
    expect(errorOf({ ...base, data: { text: '\u0000\uD83D' } })).toBeUndefined();
    expect(errorOf({ ...base, data: 'a\u0000b' })).toBeUndefined();
    expect(errorOf({ ...base, data_base64: '\u0000' })).toBeUndefined();
  });

  it('does not repeat an extension’s name (the sender’s text) in the refusal', () => {
    expect(errorOf({ ...base, 'evil\u0000name': 'x', other: 'v\u0000' })).toBe(
      'an extension must not hold a NUL or an unpaired surrogate',
    );
    expect(errorOf({ ...base, source: 'https://s/\u0000' })).toBe(
      'source must not hold a NUL or an unpaired surrogate',
    );
  });
});
