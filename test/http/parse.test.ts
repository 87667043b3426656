import {
  MAX_FORM_FIELDS,
  MAX_JSON_DEPTH,
  formFields,
  formHasField,
  parseForm,
  parseJson,
} from '../../lib/http/parse';

describe('formHasField', () => {
  const has = (form: string) => formHasField(Buffer.from(form), Buffer.from('ssl_check=1'));

  it('finds the field with exactly that value, wherever it stands', () => {
    expect(has('ssl_check=1')).toBe(true);
    expect(has('ssl_check=1&token=x')).toBe(true);
    expect(has('token=x&ssl_check=1')).toBe(true);
    expect(has('token=x&ssl_check=1&team_id=T1')).toBe(true);
  });

  it('counts only a whole field, not the same bytes inside another', () => {
    expect(has('')).toBe(false);
    expect(has('xssl_check=1')).toBe(false);
    expect(has('ssl_check=10')).toBe(false);
    expect(has('ssl_check=0')).toBe(false);
    expect(has('text=ssl_check%3D1')).toBe(false);
    expect(has('a=xssl_check=1&ssl_check=12')).toBe(false);
  });

  it('looks past a partial match to a whole one later', () => {
    expect(has('xssl_check=1&ssl_check=1')).toBe(true);
    expect(has('ssl_check=12&ssl_check=1')).toBe(true);
  });
});

describe('parseJson', () => {
  const nested = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);
  const objects = (depth: number) => '{"a":'.repeat(depth - 1) + '{}' + '}'.repeat(depth - 1);
  const tooDeep = { ok: false, status: 413, error: 'body nested too deeply' };

  it('takes JSON nested exactly MAX_JSON_DEPTH deep and refuses one level more, arrays or objects', () => {
    expect(MAX_JSON_DEPTH).toBe(64);
    expect(parseJson(Buffer.from(nested(64))).ok).toBe(true);
    expect(parseJson(Buffer.from(nested(65)))).toEqual(tooDeep);
    expect(parseJson(Buffer.from(objects(64))).ok).toBe(true);
    expect(parseJson(Buffer.from(objects(65)))).toEqual(tooDeep);
  });

  it('counts the deepest point, even when a shallower branch came first', () => {
    // [ A , B ]: A reaches 64 levels with the outer array, B 65.
    expect(parseJson(Buffer.from(`[${nested(63)},${nested(64)}]`))).toEqual(tooDeep);
    expect(parseJson(Buffer.from(`[${nested(63)},${nested(63)}]`)).ok).toBe(true);
  });

  it('counts open brackets only, and each closing one ends its level', () => {
    // Many values side by side are no deeper than one of them.
    expect(parseJson(Buffer.from(`[${'1,'.repeat(100)}1]`))).toEqual({
      ok: true,
      value: [...Array.from({ length: 100 }, () => 1), 1],
    });
    expect(parseJson(Buffer.from(`[${'[],'.repeat(100)}[]]`)).ok).toBe(true);
    expect(parseJson(Buffer.from(`[${'{},'.repeat(100)}{}]`)).ok).toBe(true);
  });

  it('skips brackets inside strings, escaped quotes included, and counts again after a string', () => {
    const brackets = '['.repeat(100);
    expect(parseJson(Buffer.from(`{"a":"${brackets}"}`))).toEqual({
      ok: true,
      value: { a: brackets },
    });
    expect(parseJson(Buffer.from(`{"a":"\\"${brackets}"}`))).toEqual({
      ok: true,
      value: { a: `"${brackets}` },
    });
    expect(parseJson(Buffer.from(`["a",${nested(64)}]`))).toEqual(tooDeep);
    expect(parseJson(Buffer.from(`["\\\\",${nested(64)}]`))).toEqual(tooDeep);
  });

  it('takes text as well as bytes, bounded alike, read as UTF-8', () => {
    expect(parseJson('{"a":"é"}')).toEqual({ ok: true, value: { a: 'é' } });
    expect(parseJson(Buffer.from('{"a":"é"}'))).toEqual({ ok: true, value: { a: 'é' } });
    expect(parseJson(nested(65))).toEqual(tooDeep);
  });

  it('refuses malformed JSON 400 without its text', () => {
    expect(parseJson(Buffer.from('{"a":'))).toEqual({
      ok: false,
      status: 400,
      error: 'malformed body',
    });
  });
});

describe('parseForm', () => {
  const fields = (count: number) =>
    Buffer.from(Array.from({ length: count }, (_, i) => `f${i}=${i}`).join('&'));
  const tooMany = { ok: false, status: 413, error: 'too many parameters' };

  it('takes exactly MAX_FORM_FIELDS fields and refuses one more', () => {
    expect(MAX_FORM_FIELDS).toBe(1000);
    const taken = parseForm(fields(1000));
    expect(taken.ok && Object.keys(taken.value).length).toBe(1000);
    expect(parseForm(fields(1001))).toEqual(tooMany);
  });

  it('counts empty fields too, the first one included', () => {
    expect(parseForm(Buffer.from('&'.repeat(1000)))).toEqual(tooMany);
    expect(parseForm(Buffer.from('&'.repeat(999)))).toEqual({ ok: true, value: {} });
  });

  it('reads an empty form as no fields', () => {
    expect(parseForm(Buffer.alloc(0))).toEqual({ ok: true, value: {} });
  });

  it('gives a flat object of UTF-8 text; the first of a repeated name counts', () => {
    expect(parseForm(Buffer.from('a=1&b=%C3%A9&a=2&c[d]=3&e=x+y'))).toEqual({
      ok: true,
      value: { a: '1', b: 'é', 'c[d]': '3', e: 'x y' },
    });
  });
});

describe('formFields', () => {
  /** What parseForm gives for `names`, the fields it lacks left out. */
  const picked = (form: Buffer, names: string[]) => {
    const whole = parseForm(form);
    if (!whole.ok) return whole;
    const value: Record<string, string> = {};
    for (const name of names)
      if (Object.hasOwn(whole.value, name)) value[name] = whole.value[name]!;
    return { ok: true, value };
  };
  const forms: [string, Buffer][] = [
    ['plain', Buffer.from('command=%2Fcoffee&text=help&user_id=U1')],
    ['spaces and pluses', Buffer.from('text=a+b%2Bc+&command=+%2F+')],
    ['an encoded name', Buffer.from('comm%61nd=%2Ftea&command=%2Fcoffee&te+xt=1&text=2')],
    ['repeated names, the first counting', Buffer.from('text=1&text=2&command=x&command=y')],
    ['empty fields and values', Buffer.from('&&text=&command&=1&&')],
    ['no equals sign', Buffer.from('text&command=a=b=c')],
    ['the last without an equals sign', Buffer.from('command=%2Fcoffee&text')],
    ['an empty name', Buffer.from('=1&&=2&command=')],
    ['a bad escape', Buffer.from('text=100%&command=%zz%2')],
    ['bytes that are not UTF-8', Buffer.from('text=%E0%A4&command=%C3%A9%FF')],
    ['UTF-8 as sent', Buffer.from('text=caf\u00e9 \u2615&command=\u00e9', 'utf8')],
    ['raw bytes that are not UTF-8', Buffer.from([0x74, 0x65, 0x78, 0x74, 0x3d, 0xff, 0xfe])],
    ['an empty form', Buffer.alloc(0)],
  ];

  it.each(forms)('gives what parseForm gives for the fields asked: %s', (_name, form) => {
    // The empty name too: a field `=1` has it, an empty field (`&&`) none.
    const names = ['command', 'text', 'missing', ''];
    const fields = formFields(form, names);
    expect(fields).toEqual(picked(form, names));
  });

  it('refuses past MAX_FORM_FIELDS as parseForm does, and takes exactly that many', () => {
    const many = (count: number) => Buffer.from(`text=1${'&'.repeat(count - 1)}`);
    expect(formFields(many(1000), ['text'])).toEqual({ ok: true, value: { text: '1' } });
    expect(formFields(many(1001), ['text'])).toEqual(parseForm(many(1001)));
    expect(formFields(many(1001), ['text'])).toMatchObject({ ok: false, status: 413 });
  });

  it('stops at the last field asked for: what follows is never decoded', () => {
    // A later bad field would come out as U+FFFD; it is never read.
    const form = Buffer.from('text=a&command=b&command=c&later=%FF');
    expect(formFields(form, ['text', 'command'])).toEqual({
      ok: true,
      value: { text: 'a', command: 'b' },
    });
  });
});
