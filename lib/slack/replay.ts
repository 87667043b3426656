import type { Publisher } from '../eventing/publisher';
import type { DeadLetterStore, DeadSelection, StoredDeadEvent } from './dead-store';
import type { WorkKey } from './work-store';

/** CloudEvents' optional attributes: the publisher sets its own, so these are not sent again. */
const OWN_ATTRIBUTES = new Set([
  // Stryker disable next-line StringLiteral: the publisher sets datacontenttype after the extensions: a kept one never reaches the wire
  'datacontenttype',
  'dataschema',
  'subject',
  'time',
]);
/** CloudEvents extension names (the SDK refuses others). */
const EXTENSION_NAME = /^[a-z0-9]{1,20}$/;

export interface ReplayOptions {
  store: DeadLetterStore;
  /** Publishes to the Broker (K_SINK); none for a dry run, which publishes and marks nothing. */
  publisher: Publisher | undefined;
  /** Dead events read at a time. */
  batchSize: number;
  /** The run stops once this many events could not be published. */
  maxFailures: number;
  /** One line for a person per event, and one at the end. */
  print: (line: string) => void;
}

export interface ReplayReport {
  /** Published again (or, on a dry run, found). */
  replayed: number;
  failed: number;
  /** Stopped at maxFailures before every selected event was tried. */
  stopped: boolean;
}

type Prepared =
  | {
      ok: true;
      /** The stored JSON text, published as it is. */
      data: Buffer;
      extensions: Record<string, string>;
    }
  | { ok: false; reason: string };

/** The stored event as it is published again, or why it cannot be. */
function prepare(event: StoredDeadEvent): Prepared {
  if (event.data === null) return { ok: false, reason: 'its data was not kept' };
  let data: unknown;
  try {
    data = JSON.parse(event.data);
  } catch {
    return { ok: false, reason: 'its data is not JSON' };
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    return { ok: false, reason: 'its data is not a JSON object' };
  }
  const extensions: Record<string, string> = {};
  if (event.attributes !== null) {
    let attributes: unknown;
    try {
      attributes = JSON.parse(event.attributes);
    } catch {
      return { ok: false, reason: 'its attributes are not JSON' };
    }
    if (attributes === null || typeof attributes !== 'object') {
      return { ok: false, reason: 'its attributes are not a JSON object' };
    }
    for (const [name, value] of Object.entries(attributes)) {
      if (EXTENSION_NAME.test(name) && !OWN_ATTRIBUTES.has(name) && typeof value === 'string') {
        extensions[name] = value;
      }
    }
  }
  return { ok: true, data: Buffer.from(event.data, 'utf8'), extensions };
}

const named = (event: StoredDeadEvent) => `${event.type} ${event.source} ${event.id}`;

/**
 * Publishes the selected dead events again, as they came (id, source, type, data, extensions),
 * batch by batch, one at a time, each within the publisher's timeout; marks each published one
 * replayed, so that a worker claims it again and runs it at most once (the claim is keyed by
 * source and id, so a duplicate publish is harmless). Errors reading or marking the table reject.
 */
export async function replayDeadEvents(
  selection: DeadSelection,
  options: ReplayOptions,
): Promise<ReplayReport> {
  const { store, publisher, print } = options;
  const report: ReplayReport = { replayed: 0, failed: 0, stopped: false };
  let after: WorkKey | undefined;
  for (;;) {
    const batch = await store.deadEvents(selection, options.batchSize, after);
    for (const event of batch) {
      after = event;
      const prepared = prepare(event);
      if (!prepared.ok) {
        report.failed += 1;
        print(`failed ${named(event)}: ${prepared.reason}`);
      } else if (publisher === undefined) {
        report.replayed += 1;
        print(`would replay ${named(event)}`);
      } else {
        const published = await publisher.publish({
          id: event.id,
          source: event.source,
          type: event.type,
          data: prepared.data,
          extensions: prepared.extensions,
        });
        if (published.ok) {
          // Not dead any more when a worker has already taken it: replayed all the same.
          await store.markReplayed(event);
          report.replayed += 1;
          print(`replayed ${named(event)}`);
        } else {
          report.failed += 1;
          print(`failed ${named(event)}: ${published.reason}`);
        }
      }
      if (report.failed >= options.maxFailures) {
        report.stopped = true;
        return report;
      }
    }
    if (batch.length < options.batchSize) return report;
  }
}
