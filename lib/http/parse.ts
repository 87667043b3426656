/**
 * Parsers for bodies already authenticated, each bounded in what it builds: JSON by nesting depth,
 * forms by field count. Flat forms only (Slack's): `a[b]=1` is the field "a[b]", never an object.
 */

/** Deeper JSON than this is refused: Slack's deepest payloads (Block Kit) nest about 15 levels. */
export const MAX_JSON_DEPTH = 64;
/** More form fields than this are refused (body-parser's default, which the framework applies). */
export const MAX_FORM_FIELDS = 1000;

export type Parsed<T> = { ok: true; value: T } | { ok: false; status: number; error: string };

const OPEN_OBJECT = 0x7b;
const OPEN_ARRAY = 0x5b;
const CLOSE_OBJECT = 0x7d;
const CLOSE_ARRAY = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const AMPERSAND = 0x26;

/** The deepest nesting of objects and arrays in JSON text, strings skipped; stops past `limit`. */
function jsonDepth(bytes: Uint8Array, limit: number): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  // Stryker disable next-line EqualityOperator: bytes[length] is undefined, which matches no byte
  for (let i = 0; i < bytes.length; i += 1) {
    const byte = bytes[i];
    if (inString) {
      if (byte === BACKSLASH) i += 1;
      else if (byte === QUOTE) inString = false;
    } else if (byte === QUOTE) {
      inString = true;
    } else if (byte === OPEN_OBJECT || byte === OPEN_ARRAY) {
      depth += 1;
      // Only `> limit` is asked of `deepest`, which returns as soon as depth first passes it:
      // Stryker disable next-line EqualityOperator,ConditionalExpression: `>=` or always, the same
      if (depth > deepest) deepest = depth;
      // Stryker disable next-line ConditionalExpression: the same result without it, only slower
      if (deepest > limit) return deepest;
    } else if (byte === CLOSE_OBJECT || byte === CLOSE_ARRAY) {
      depth -= 1;
    }
  }
  return deepest;
}

/** JSON text as UTF-8, refused when nested deeper than MAX_JSON_DEPTH or malformed. */
export function parseJson(bytes: Buffer | string): Parsed<unknown> {
  const buffer = typeof bytes === 'string' ? Buffer.from(bytes) : bytes;
  if (jsonDepth(buffer, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) {
    return { ok: false, status: 413, error: 'body nested too deeply' };
  }
  try {
    return { ok: true, value: JSON.parse(buffer.toString('utf8')) as unknown };
  } catch {
    return { ok: false, status: 400, error: 'malformed body' };
  }
}

/** A form's text (UTF-8), or the refusal of a form of more than MAX_FORM_FIELDS fields. */
function formText(bytes: Buffer): Parsed<string> {
  const text = bytes.toString('utf8');
  // Stryker disable next-line ConditionalExpression: an empty form has no `&`: 1 is never compared
  let fields = text.length === 0 ? 0 : 1;
  // `&` is never part of a multi-byte UTF-8 character: the text has as many as the bytes.
  for (let at = text.indexOf('&'); at >= 0; at = text.indexOf('&', at + 1)) {
    fields += 1;
    if (fields > MAX_FORM_FIELDS) return { ok: false, status: 413, error: 'too many parameters' };
  }
  return { ok: true, value: text };
}

/** A form (application/x-www-form-urlencoded, UTF-8) as its fields, flat, at most MAX_FORM_FIELDS. */
export function parseForm(bytes: Buffer): Parsed<Record<string, string>> {
  const text = formText(bytes);
  if (!text.ok) return text;
  const value: Record<string, string> = {};
  // forEach, not for…of: no [name, value] array made for each field.
  new URLSearchParams(text.value).forEach((field, name) => {
    // The first of a repeated name counts.
    if (!Object.hasOwn(value, name)) value[name] = field;
  });
  return { ok: true, value };
}

/** One name or value of a form decoded as URLSearchParams decodes it (`+` a space, `%XX` a byte). */
function decodeFormComponent(raw: string): string {
  // Stryker disable next-line ConditionalExpression,StringLiteral: replacing in every text gives the same, only slower
  const spaced = raw.includes('+') ? raw.replaceAll('+', ' ') : raw;
  // Stryker disable next-line ConditionalExpression,StringLiteral: decoding a text without `%` gives it back, only slower
  if (!spaced.includes('%')) return spaced;
  try {
    return decodeURIComponent(spaced);
  } catch {
    // A `%` without two hex digits, or bytes that are not UTF-8: what URLSearchParams makes of
    // them (kept as they are, U+FFFD), from the one field alone.
    return new URLSearchParams(`=${raw}`).get('') ?? raw;
  }
}

/**
 * The first value of each of a few fields of a form, as parseForm gives them, without building
 * the whole form: fields are read up to the last one asked for, and only those asked for are
 * decoded beyond their name. Refused as parseForm refuses (MAX_FORM_FIELDS).
 */
export function formFields<Name extends string>(
  bytes: Buffer,
  names: readonly Name[],
): Parsed<Partial<Record<Name, string>>> {
  const text = formText(bytes);
  if (!text.ok) return text;
  const form = text.value;
  const value: Partial<Record<Name, string>> = {};
  let missing = names.length;
  // Stryker disable next-line ConditionalExpression,EqualityOperator: reading on to the end gives the same values, only slower
  for (let start = 0; start < form.length && missing > 0;) {
    const next = form.indexOf('&', start);
    const end = next < 0 ? form.length : next;
    // An empty field (`&&`) is none, as URLSearchParams reads it.
    if (end > start) {
      const field = form.slice(start, end);
      const equals = field.indexOf('=');
      const name = decodeFormComponent(equals < 0 ? field : field.slice(0, equals));
      if ((names as readonly string[]).includes(name) && value[name as Name] === undefined) {
        value[name as Name] = equals < 0 ? '' : decodeFormComponent(field.slice(equals + 1));
        // Stryker disable next-line AssignmentOperator: reading on to the end gives the same values, only slower
        missing -= 1;
      }
    }
    start = end + 1;
  }
  return { ok: true, value };
}

/**
 * Whether a raw form has the field `wanted` (`name=value`, as sent) exactly, without building the
 * form: for the one question asked of a body before it is authenticated (Slack's ssl_check).
 */
export function formHasField(bytes: Buffer, wanted: Buffer): boolean {
  const { length } = wanted;
  // Each place the bytes occur counts only as a whole field: from a field's start to its end.
  for (let at = bytes.indexOf(wanted); at >= 0; at = bytes.indexOf(wanted, at + 1)) {
    const end = at + length;
    if (
      (at === 0 || bytes[at - 1] === AMPERSAND) &&
      (end === bytes.length || bytes[end] === AMPERSAND)
    ) {
      return true;
    }
  }
  return false;
}
