import convict from 'convict';

const DIGITS = /^\d+$/;

/** Integers as plain decimal digits only: parseInt would accept "9090abc" as 9090. */
export function strictInteger(min: number, max: number): convict.Format {
  return {
    name: `integer-${min}-${max}`,
    coerce: (value: string) => (DIGITS.test(value.trim()) ? Number(value.trim()) : value),
    validate: (value: unknown) => {
      if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
        throw new Error('must be a whole number of plain digits');
      }
      if (value < min || value > max) {
        throw new Error(`must be between ${min} and ${max}`);
      }
    },
  };
}

/**
 * A setting's value as it may be printed: user-info (`//user:password@`) and anything from a `?`
 * or `#` on are replaced, by text, so that a URL that does not even parse is redacted too.
 */
export function redactValue(value: string): string {
  return value.replace(/\/\/[^/\s]*@/g, '//redacted@').replace(/[?#][^"]*/g, '?redacted');
}

export const httpUrl: convict.Format = {
  name: 'http-url',
  // A URL setting must hold neither: redacted before convict can echo it, then refused.
  coerce: (value: string) => redactValue(value.trim()),
  validate: (value: unknown) => {
    if (typeof value !== 'string') throw new Error('must be a URL');
    if (value === '') return; // empty means "not set": checked against NODE_ENV below
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      throw new Error('must be an absolute http:// or https:// URL');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new Error('must be an absolute http:// or https:// URL');
    }
    if (url.username !== '' || url.password !== '') {
      throw new Error('must not contain credentials');
    }
    if (url.search !== '' || url.hash !== '') {
      throw new Error('must not contain a query or fragment');
    }
  },
};

export const urlPath: convict.Format = {
  name: 'url-path',
  validate: (value: unknown) => {
    if (typeof value !== 'string' || !value.startsWith('/')) {
      throw new Error('must be a path starting with "/"');
    }
    if (/[\s?#%\\]/.test(value) || value.split('/').some((s) => s === '.' || s === '..')) {
      throw new Error('must be a plain path without spaces, "?", "#", "%", "\\" or dot segments');
    }
  },
};

export const absoluteFile: convict.Format = {
  name: 'absolute-file',
  validate: (value: unknown) => {
    if (typeof value !== 'string' || (value !== '' && !value.startsWith('/'))) {
      throw new Error('must be an absolute file path');
    }
  },
};

const VAULT_NAME = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;
export const vaultName: convict.Format = {
  name: 'vault-name',
  validate: (value: unknown) => {
    if (typeof value !== 'string' || (value !== '' && !VAULT_NAME.test(value))) {
      throw new Error('must be a Vault path like "coffeebuddy/slack": no leading "/", no spaces');
    }
  },
};

export const anyText: convict.Format = {
  name: 'any-text',
  validate: (value: unknown) => {
    if (typeof value !== 'string') throw new Error('must be text');
  },
};

/** An IP address or host name to listen on, or empty for every interface. */
export const listenHost: convict.Format = {
  name: 'listen-host',
  validate: (value: unknown) => {
    if (typeof value !== 'string' || (value !== '' && !/^[A-Za-z0-9.:-]+$/.test(value))) {
      throw new Error('must be an IP address or host name, or empty for every interface');
    }
  },
};

/** One JWT audience or subject as the settings take it: printable ASCII without space or comma. */
const JWT_NAME = /^[\x21-\x2b\x2d-\x7e]{1,256}$/;

/**
 * The audience event deliveries must be addressed to (a JWT `aud`): printable ASCII without
 * spaces or commas, or empty for none.
 */
export const oidcAudience: convict.Format = {
  name: 'oidc-audience',
  validate: (value: unknown) => {
    if (typeof value !== 'string' || (value !== '' && !JWT_NAME.test(value))) {
      throw new Error('must be at most 256 printable characters without spaces or commas');
    }
  },
};

/** A comma list of JWT subjects (`system:serviceaccount:<namespace>:<name>`); empty for any. */
export const oidcSubjects: convict.Format = {
  name: 'oidc-subjects',
  validate: (value: unknown) => {
    if (typeof value !== 'string') throw new Error('must be a comma list of subjects');
    if (value === '') return;
    const subjects = value.split(',');
    if (subjects.length > 32 || subjects.some((s) => !JWT_NAME.test(s))) {
      throw new Error(
        'must be a comma list of at most 32 subjects, each printable without spaces, none empty',
      );
    }
  },
};

/** An HTTP header name (RFC 9110 token). */
export const headerName: convict.Format = {
  name: 'header-name',
  validate: (value: unknown) => {
    if (typeof value !== 'string' || !/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/.test(value)) {
      throw new Error('must be an HTTP header name');
    }
  },
};

/** "true" or "false" only: convict's Boolean reads "0", "no" and "" as true. */
export const strictBoolean: convict.Format = {
  name: 'strict-boolean',
  coerce: (value: string) => {
    const word = value.trim().toLowerCase();
    return word === 'true' ? true : word === 'false' ? false : value;
  },
  validate: (value: unknown) => {
    if (typeof value !== 'boolean') throw new Error('must be true or false');
  },
};

/** PostgreSQL's host: a host name or IP address, or the absolute directory of a Unix socket. */
export const pgHost: convict.Format = {
  name: 'pg-host',
  validate: (value: unknown) => {
    if (typeof value !== 'string' || !/^([A-Za-z0-9.:-]+|\/[^\s]*)$/.test(value)) {
      throw new Error('must be a host name, an IP address or a socket directory such as /run/pg');
    }
  },
};

/** A PostgreSQL role or database name: PostgreSQL's 63-byte limit, no spaces or quotes. */
export const pgName: convict.Format = {
  name: 'pg-name',
  validate: (value: unknown) => {
    if (typeof value !== 'string' || !/^[A-Za-z0-9_.-]{1,63}$/.test(value)) {
      throw new Error('must be 1–63 letters, digits, "_", "." or "-"');
    }
  },
};

/** CloudEvents' own attribute names: an extension may not take one. */
const CLOUDEVENT_ATTRIBUTES = new Set([
  'id',
  'source',
  'type',
  'specversion',
  'datacontenttype',
  'dataschema',
  'subject',
  'time',
  'data',
  'data_base64',
]);
const EXTENSION_NAME = /^[a-z0-9]{1,20}$/;
/** Printable ASCII: each value is sent as a `ce-<name>` header. */
const EXTENSION_VALUE = /^[\x20-\x7e]{0,1024}$/;
/**
 * All the extensions' headers together (`ce-<name>: <value>` and CRLF each), within the 8 KiB a
 * Broker's ingress takes for a request's whole head (Vert.x's default, Kafka Broker's receiver).
 */
export const CE_OVERRIDES_MAX_HEADER_BYTES = 8192;
const headerBytes = (name: string, value: string) => `ce-${name}: ${value}\r\n`.length;

/**
 * The extensions of Knative's K_CE_OVERRIDES (`{"extensions":{"name":"value"}}`), checked
 * strictly; empty text means none. Errors name what is wrong, never a value.
 */
export function parseCeOverrides(text: string): Readonly<Record<string, string>> {
  if (text.trim() === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error('must be JSON like {"extensions":{"name":"value"}}');
  }
  const isObject = (value: unknown): value is Record<string, unknown> =>
    value !== null && typeof value === 'object' && !Array.isArray(value);
  if (!isObject(parsed) || Object.keys(parsed).some((key) => key !== 'extensions')) {
    throw new Error(
      'must be an object with "extensions" only, like {"extensions":{"name":"value"}}',
    );
  }
  const { extensions = {} } = parsed;
  if (!isObject(extensions)) throw new Error('"extensions" must be an object of names to text');
  const result: Record<string, string> = {};
  for (const [name, value] of Object.entries(extensions)) {
    const shown = JSON.stringify(name.slice(0, 32));
    if (!EXTENSION_NAME.test(name)) {
      throw new Error(`extension name ${shown} must be 1–20 lower-case letters or digits`);
    }
    if (CLOUDEVENT_ATTRIBUTES.has(name)) {
      throw new Error(`extension name ${shown} is a CloudEvents attribute, not an extension`);
    }
    if (typeof value !== 'string' || !EXTENSION_VALUE.test(value)) {
      throw new Error(
        `extension ${shown} must have a value of printable ASCII text, at most 1024 characters`,
      );
    }
    result[name] = value;
  }
  const total = Object.entries(result).reduce((sum, [n, v]) => sum + headerBytes(n, v), 0);
  if (total > CE_OVERRIDES_MAX_HEADER_BYTES) {
    throw new Error(
      `extensions must fit in ${CE_OVERRIDES_MAX_HEADER_BYTES} bytes of headers in all ` +
        `(ce-<name>: <value>, each with its line end); these take ${total}`,
    );
  }
  return Object.freeze(result);
}

export const ceOverrides: convict.Format = {
  name: 'ce-overrides',
  validate: (value: unknown) => {
    if (typeof value !== 'string') throw new Error('must be JSON text');
    parseCeOverrides(value);
  },
};
