import { reasonOf } from '../errors';
import type { ReceivedEvent } from '../eventing/event';
import type { Lifecycle } from '../lifecycle';
import type { Logger } from '../logger';
import type { DeadLetterMetrics } from './dead-metrics';
import { DEAD_SWEEP_BATCH, type DeadEvent, type DeadLetterStore } from './dead-store';
import type { WorkMetrics } from './work-metrics';
import { kindOf, type WorkResult } from './worker';

/** At most this long is kept of Knative's error attributes in the table. */
const MAX_ERROR_FIELD_LENGTH = 512;
/** Knative's error extensions (`knativeerrorcode`, …): kept in columns or dropped, never replayed. */
const KNATIVE_ERROR_PREFIX = 'knativeerror';
/** The attributes kept with a dead row, as JSON; beyond, none are kept. */
const MAX_ATTRIBUTES_BYTES = 8 * 1024;
/** Dead rows are swept at least this often, whether dead letters come or not. */
const SWEEP_INTERVAL_MS = 60_000;

export interface DeadLettersOptions {
  store: DeadLetterStore;
  logger: Logger;
  metrics: WorkMetrics;
  deadMetrics: DeadLetterMetrics;
  /** Sweeps in the background are tracked here, so that the drain waits for them. */
  lifecycle: Lifecycle;
  /** How long dead and replayed rows are kept (SLACK_DEAD_RETENTION_MS). */
  retentionMs: number;
  /** Most dead rows kept (SLACK_DEAD_MAX_ROWS). */
  maxRows: number;
  /** Largest event data kept, in bytes of JSON: what the worker would take again. */
  maxDataBytes: number;
}

/** Bounded, for a column. */
const bounded = (value: string | undefined): string =>
  (value ?? 'unknown').slice(0, MAX_ERROR_FIELD_LENGTH);

/** The event as kept with its row: its other attributes and its data, each within its bound. */
function keptEvent(event: ReceivedEvent, maxDataBytes: number): DeadEvent {
  const attributes = Object.fromEntries(
    Object.entries(event.attributes).filter(([name]) => !name.startsWith(KNATIVE_ERROR_PREFIX)),
  );
  const attributesJson = JSON.stringify(attributes);
  // Well-formed JSON.stringify escapes NUL and lone surrogates: the text is valid for a column.
  // Stryker disable next-line ConditionalExpression: JSON.stringify(undefined) is undefined too
  const dataJson = event.data === undefined ? undefined : JSON.stringify(event.data);
  return {
    attributes: Buffer.byteLength(attributesJson) <= MAX_ATTRIBUTES_BYTES ? attributesJson : null,
    data: dataJson !== undefined && Buffer.byteLength(dataJson) <= maxDataBytes ? dataJson : null,
  };
}

/**
 * The Trigger's dead-letter sink: records each Slack event Knative gave up on as dead, with
 * Knative's `knativeerrorcode` and `knativeerrordest` and the event itself (for replay), and says
 * so in one error line (id and type, never the data). Other types are refused (400); a done event
 * or one a worker holds is never changed (DeadLetterStore.markDead); dead rows are kept for
 * retentionMs and at most maxRows, the oldest removed first and counted.
 */
export class DeadLetters {
  private sweeping = false;
  private sweepAgain = false;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly options: DeadLettersOptions) {
    this.timer = setInterval(() => {
      this.sweepSoon();
    }, SWEEP_INTERVAL_MS);
    // The sweep is housekeeping: it never keeps the process alive.
    this.timer.unref();
  }

  async handle(event: ReceivedEvent): Promise<WorkResult> {
    const { store, logger, metrics } = this.options;
    const kind = kindOf(event.type);
    if (kind === 'unknown') {
      logger.warn('slack dead letter refused', {
        id: event.id,
        type: event.type,
        reason: 'not a Slack event type',
      });
      metrics.observeWork(kind, 'invalid');
      return { outcome: 'invalid', status: 400, error: 'not a Slack event type' };
    }
    const errorCode = bounded(event.attributes.knativeerrorcode);
    const errorDest = bounded(event.attributes.knativeerrordest);
    const kept = keptEvent(event, this.options.maxDataBytes);
    let record;
    try {
      record = await store.markDead(event, event.type, errorCode, errorDest, kept);
    } catch (error) {
      logger.warn('slack dead letter not recorded', { id: event.id, reason: reasonOf(error) });
      metrics.observeWork(kind, 'unavailable');
      return { outcome: 'unavailable', status: 503, error: 'database unavailable' };
    }
    if (record === 'done') {
      logger.warn('slack dead letter ignored', { id: event.id, type: event.type, reason: 'done' });
      metrics.observeWork(kind, 'ignored');
      return { outcome: 'ignored', status: 204 };
    }
    logger.error('slack event dead-lettered', {
      id: event.id,
      type: event.type,
      source: event.source,
      errorCode,
      errorDest,
      dataKept: kept.data !== null,
      // A worker still holds it: dead only if that attempt fails.
      ...(record === 'held' ? { held: true } : {}),
    });
    metrics.observeWork(kind, 'dead_lettered');
    this.sweepSoon();
    return { outcome: 'dead_lettered', status: 204 };
  }

  /** Stops the periodic sweep; one running is awaited by the drain (lifecycle). */
  close(): Promise<void> {
    clearInterval(this.timer);
    return Promise.resolve();
  }

  /** One sweep at a time; asked again meanwhile, it runs once more when done. */
  private sweepSoon(): void {
    if (this.sweeping) {
      this.sweepAgain = true;
      return;
    }
    this.sweeping = true;
    void this.options.lifecycle.track(this.sweepUntilQuiet());
  }

  private async sweepUntilQuiet(): Promise<void> {
    try {
      do {
        this.sweepAgain = false;
        await this.sweep();
      } while (this.askedAgain());
    } finally {
      this.sweeping = false;
    }
  }

  /** Whether a sweep was asked for while one ran (a dead letter, a full batch). */
  private askedAgain(): boolean {
    return this.sweepAgain;
  }

  /** One batch of each kind; a full batch asks for another sweep at once. */
  private async sweep(): Promise<void> {
    const { store, logger, deadMetrics, retentionMs, maxRows } = this.options;
    try {
      const { expired, overCap } = await store.sweep(retentionMs, maxRows);
      deadMetrics.observeRemoved('expired', expired);
      deadMetrics.observeRemoved('over_cap', overCap);
      if (expired > 0) logger.info('slack dead letters expired', { removed: expired });
      // Events lost to the cap were never replayed: said louder.
      if (overCap > 0)
        logger.warn('slack dead letters over the cap', { removed: overCap, maxRows });
      if (expired >= DEAD_SWEEP_BATCH || overCap >= DEAD_SWEEP_BATCH) this.sweepAgain = true;
    } catch (error) {
      logger.warn('slack dead letters not swept', { reason: reasonOf(error) });
    }
  }
}
