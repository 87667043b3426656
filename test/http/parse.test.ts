import { formHasField } from '../../lib/http/parse';

describe('formHasField', () => {
  const has = (form: string) => formHasField(Buffer.from(form), 'ssl_check', '1');

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
