import type { Queryable } from '../clients/postgres';
import type { WorkKey } from './work-store';

/** What recording a dead letter did. */
export type DeadLetterRecord =
  /** The event is dead: a new row, or one no worker holds (released, dead, replayed, lease ended). */
  | 'dead'
  /**
   * A worker holds a live claim on it: its state and claim are left alone, the dead letter is
   * kept with it, and the row turns dead only if that worker's attempt fails.
   */
  | 'held'
  /** Done before: nothing changed. */
  | 'done';

/** The event a dead letter carried, as kept with its row. */
export interface DeadEvent {
  /** Its attributes other than specversion, id, source, type and Knative's error ones: JSON. */
  attributes: string | null;
  /** Its data as JSON text; null when it was not kept. */
  data: string | null;
}

/** A dead event as replay reads it. */
export interface StoredDeadEvent extends WorkKey, DeadEvent {
  type: string;
}

/** Which dead events to take: all, those of one type, or those with one of these ids. */
export type DeadSelection = { type?: string; ids?: readonly string[] };

/** How many dead rows one sweep removed: past their retention, and beyond the row cap. */
export interface DeadSweep {
  expired: number;
  overCap: number;
}

/** At most this many rows are deleted by one statement of a sweep, so that each stays short. */
export const DEAD_SWEEP_BATCH = 1000;

/**
 * A row Knative gave up on that no worker holds: dead, or held by a claim that ended (its worker
 * died after the dead letter came). What the gauge counts and replay takes.
 */
const DEAD = `dead_at IS NOT NULL
  AND (state = 'dead' OR (state = 'claimed' AND lease_until < now()))`;
/** A claim that still holds: a dead letter leaves it alone. */
const LIVE = `w.state = 'claimed' AND w.lease_until >= now()`;
/** What the retention and the row cap bound: dead rows and those replayed since. */
const KEPT = `dead_at IS NOT NULL
  AND (state IN ('dead', 'replayed') OR (state = 'claimed' AND lease_until < now()))`;

/**
 * The dead-letter side of the `slack_work` table (migrations/0003_slack_dead_letters.sql): dead
 * letters recorded with their event, never over a done row or a live claim; bounded by age and
 * count; counted; and taken for replay, then marked replayed so that a worker claims them again.
 */
export class DeadLetterStore {
  constructor(private readonly db: Queryable) {}

  /**
   * Records a dead letter: the error code, the destination it failed at and the event. A done
   * event stays done; one a worker holds keeps its state and claim (`held`).
   */
  async markDead(
    key: WorkKey,
    type: string,
    errorCode: string,
    errorDest: string,
    event: DeadEvent,
  ): Promise<DeadLetterRecord> {
    const result = await this.db.query<{ state: string }>(
      'dead_mark',
      `INSERT INTO slack_work AS w
         (source, id, type, state, error_code, error_dest, dead_at, event_attributes, event_data)
       VALUES ($1, $2, $3, 'dead', $4, $5, now(), $6, $7)
       ON CONFLICT (source, id) DO UPDATE
         SET state = CASE WHEN ${LIVE} THEN w.state ELSE 'dead' END,
             claimed_by = CASE WHEN ${LIVE} THEN w.claimed_by END,
             lease_until = CASE WHEN ${LIVE} THEN w.lease_until END,
             error_code = EXCLUDED.error_code, error_dest = EXCLUDED.error_dest, dead_at = now(),
             event_attributes = EXCLUDED.event_attributes, event_data = EXCLUDED.event_data,
             updated_at = now()
         WHERE w.state <> 'done'
       RETURNING state`,
      [key.source, key.id, type, errorCode, errorDest, event.attributes, event.data],
    );
    const state = result.rows[0]?.state;
    if (state === undefined) return 'done';
    return state === 'dead' ? 'dead' : 'held';
  }

  /**
   * Removes kept dead rows past retentionMs, then the oldest beyond maxRows, each at most
   * DEAD_SWEEP_BATCH; how many of each.
   */
  async sweep(retentionMs: number, maxRows: number): Promise<DeadSweep> {
    const expired = await this.db.query(
      'dead_sweep_expired',
      `DELETE FROM slack_work WHERE ctid IN (
         SELECT ctid FROM slack_work
          WHERE ${KEPT} AND dead_at < now() - make_interval(secs => $1::float8 / 1000)
          ORDER BY dead_at LIMIT ${DEAD_SWEEP_BATCH})`,
      [retentionMs],
    );
    const overCap = await this.db.query(
      'dead_sweep_over_cap',
      `DELETE FROM slack_work WHERE ctid IN (
         SELECT ctid FROM slack_work
          WHERE ${KEPT}
          ORDER BY dead_at DESC OFFSET $1 LIMIT ${DEAD_SWEEP_BATCH})`,
      [maxRows],
    );
    return { expired: expired.rowCount ?? 0, overCap: overCap.rowCount ?? 0 };
  }

  /** How many events are dead now. */
  async countDead(): Promise<number> {
    const result = await this.db.query<{ dead: number }>(
      'dead_count',
      `SELECT count(*)::int AS dead FROM slack_work WHERE ${DEAD}`,
    );
    return result.rows[0]?.dead ?? 0;
  }

  /** Up to `limit` dead events of the selection after `after`, in (source, id) order. */
  async deadEvents(
    selection: DeadSelection,
    limit: number,
    after: WorkKey = {
      source: '',
      // Stryker disable next-line StringLiteral: a source is never empty, so ('', any id) precedes all
      id: '',
    },
  ): Promise<StoredDeadEvent[]> {
    const result = await this.db.query<{
      source: string;
      id: string;
      type: string;
      event_attributes: string | null;
      event_data: string | null;
    }>(
      'dead_select',
      `SELECT source, id, type, event_attributes, event_data FROM slack_work
        WHERE ${DEAD}
          AND ($1::text IS NULL OR type = $1)
          AND ($2::text[] IS NULL OR id = ANY($2))
          AND (source, id) > ($3, $4)
        ORDER BY source, id LIMIT $5`,
      [selection.type ?? null, selection.ids ?? null, after.source, after.id, limit],
    );
    return result.rows.map((row) => ({
      source: row.source,
      id: row.id,
      type: row.type,
      attributes: row.event_attributes,
      data: row.event_data,
    }));
  }

  /**
   * Marks a dead event published again, so that a worker claims it; one no longer dead (a worker
   * already took the replayed event) is left as it is.
   */
  async markReplayed(key: WorkKey): Promise<void> {
    await this.db.query(
      'dead_replayed',
      `UPDATE slack_work
         SET state = 'replayed', replayed_at = now(), replays = replays + 1, claimed_by = NULL,
             lease_until = NULL, updated_at = now()
       WHERE source = $1 AND id = $2 AND ${DEAD}`,
      [key.source, key.id],
    );
  }
}
