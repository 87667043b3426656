// Bounds on attributes, so that a row and a log line stay small whatever a producer sends.
/** The longest CloudEvent id taken (the work table's key). */
export const MAX_ID_LENGTH = 128;
const MAX_SOURCE_LENGTH = 256;
const MAX_TYPE_LENGTH = 128;

/** A CloudEvent as a receiver takes it: what identifies it, its type, data and other attributes. */
export interface ReceivedEvent {
  id: string;
  source: string;
  type: string;
  data: unknown;
  /** Every other attribute (extensions included), as strings. */
  attributes: Readonly<Record<string, string>>;
}

export type Checked = { ok: true; event: ReceivedEvent } | { ok: false; error: string };

/** The attributes a receiver reads itself; the data (`data`, `data_base64`) is not an attribute. */
const CORE = new Set(['specversion', 'id', 'source', 'type']);

/**
 * A NUL (PostgreSQL's text cannot hold one) or a UTF-16 surrogate without its pair (UTF-8 has no
 * encoding for it: written as U+FFFD, two such ids would become one).
 */
const UNSTORABLE = /\0|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * A CloudEvent 1.0 from what a transport parsed (the cloudevents SDK's event, or
 * functions-framework's plain object): specversion, id, source and type present and bounded, and
 * no attribute holding a NUL or an unpaired surrogate (only a structured event's JSON can).
 */
export function receivedEventOf(candidate: unknown): Checked {
  if (candidate === null || typeof candidate !== 'object' || Array.isArray(candidate)) {
    return { ok: false, error: 'not a CloudEvent' };
  }
  const fields = candidate as Record<string, unknown>;
  if (fields.specversion !== '1.0') return { ok: false, error: 'specversion must be 1.0' };
  const bounds = { id: MAX_ID_LENGTH, source: MAX_SOURCE_LENGTH, type: MAX_TYPE_LENGTH };
  for (const [name, max] of Object.entries(bounds)) {
    const value = fields[name];
    if (typeof value !== 'string' || value === '' || value.length > max) {
      return { ok: false, error: `${name} must be 1 to ${max} characters` };
    }
  }
  const attributes: Record<string, string> = {};
  for (const [name, value] of Object.entries(fields)) {
    if (name === 'data' || name === 'data_base64') continue;
    if (typeof value === 'string' && UNSTORABLE.test(value)) {
      // Only a core attribute's name is repeated: an extension's is the sender's text.
      const named = CORE.has(name) ? name : 'an extension';
      return { ok: false, error: `${named} must not hold a NUL or an unpaired surrogate` };
    }
    if (!CORE.has(name) && (typeof value === 'string' || typeof value === 'number')) {
      attributes[name] = String(value);
    }
  }
  const { id, source, type } = fields as Record<'id' | 'source' | 'type', string>;
  return { ok: true, event: { id, source, type, data: fields.data, attributes } };
}

/**
 * What a receiver answers Knative for one event, as its delivery contract reads it: 204 taken;
 * 400 not retried; 409, 429 and 5xx retried (429 and 503 after `Retry-After` when it is given).
 */
export interface TakeResult {
  status: number;
  /** Why, for a refusal's body: never the event's data. */
  error?: string;
  /** Seconds before Knative should deliver again (429, 503). */
  retryAfterSeconds?: number;
}
