import {
  MAX_FORM_FIELDS,
  MAX_JSON_DEPTH,
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
