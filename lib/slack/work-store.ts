import type { Queryable } from '../clients/postgres';

/** An event as the work table knows it: CloudEvents' `source` and `id` identify it. */
export interface WorkKey {
  source: string;
  id: string;
}

/** What claiming an event found. */
export type Claim =
  /** This worker holds it until its lease ends; `attempts` counts this one. */
  | { claimed: true; attempts: number }
  /** Done before: nothing to run. */
  | { claimed: false; state: 'done' }
  /** Another worker holds a live lease on it. */
  | { claimed: false; state: 'claimed' };

/** At most this many done rows are deleted by one sweep, so that a sweep stays short. */
const SWEEP_BATCH = 1000;
/** A released event's state: dead when a dead letter came for it while it was held (dead_at). */
const RELEASED = `CASE WHEN dead_at IS NULL THEN 'released' ELSE 'dead' END`;

/**
 * The `slack_work` table (migrations/0002_slack_work.sql, 0003): one row per event, claimed by one
 * worker at a time under a lease, so that every worker pod runs an event's handlers once, and a
 * worker killed mid-handler holds it only until its lease ends. Every statement is one round trip
 * and atomic on its own; none holds a transaction open across a handler.
 */
export class WorkStore {
  constructor(
    private readonly db: Queryable,
    /** This worker's name in `claimed_by`: unique per process. */
    readonly workerId: string,
  ) {}

  /**
   * Claims an event for leaseMs: a new one, one released by a failed attempt, one dead-lettered
   * before (a new delivery is a new chance), one replayed, or one whose holder's lease has ended.
   * A dead letter recorded before is forgotten: this attempt decides anew.
   */
  async claim(key: WorkKey, type: string, leaseMs: number): Promise<Claim> {
    const claimed = await this.db.query<{ attempts: number }>(
      'work_claim',
      `INSERT INTO slack_work AS w (source, id, type, state, attempts, claimed_by, lease_until)
       VALUES ($1, $2, $3, 'claimed', 1, $4, now() + make_interval(secs => $5::float8 / 1000))
       ON CONFLICT (source, id) DO UPDATE
         SET state = 'claimed', attempts = w.attempts + 1, claimed_by = EXCLUDED.claimed_by,
             lease_until = EXCLUDED.lease_until, dead_at = NULL, updated_at = now()
         WHERE w.state IN ('released', 'dead', 'replayed')
            OR (w.state = 'claimed' AND w.lease_until < now())
       RETURNING attempts`,
      [key.source, key.id, type, this.workerId, leaseMs],
    );
    const row = claimed.rows[0];
    if (row !== undefined) return { claimed: true, attempts: row.attempts };
    const found = await this.db.query<{ state: string }>(
      'work_state',
      'SELECT state FROM slack_work WHERE source = $1 AND id = $2',
      [key.source, key.id],
    );
    // Released, dead or replayed between the two statements: someone may claim it; Knative retries.
    return { claimed: false, state: found.rows[0]?.state === 'done' ? 'done' : 'claimed' };
  }

  /**
   * Records an event this worker holds as done, forgetting a dead letter that came meanwhile and
   * the event it kept; false when its lease was lost meanwhile.
   */
  async complete(key: WorkKey): Promise<boolean> {
    const result = await this.db.query(
      'work_complete',
      `UPDATE slack_work
         SET state = 'done', done_at = now(), updated_at = now(), claimed_by = NULL,
             lease_until = NULL, last_error = NULL, dead_at = NULL, event_attributes = NULL,
             event_data = NULL
       WHERE source = $1 AND id = $2 AND state = 'claimed' AND claimed_by = $3`,
      [key.source, key.id, this.workerId],
    );
    return result.rowCount === 1;
  }

  /**
   * Gives back an event this worker holds after a failed attempt, saying why (no data); dead when
   * Knative gave up on it meanwhile (a dead letter came while it was held), so that it is not lost.
   */
  async release(key: WorkKey, reason: string): Promise<void> {
    await this.db.query(
      'work_release',
      `UPDATE slack_work
         SET state = ${RELEASED}, claimed_by = NULL, lease_until = NULL, last_error = $4,
             updated_at = now()
       WHERE source = $1 AND id = $2 AND state = 'claimed' AND claimed_by = $3`,
      [key.source, key.id, this.workerId, reason],
    );
  }

  /** Gives back everything this worker still holds: the drain's last step. How many. */
  async releaseAll(reason: string): Promise<number> {
    const result = await this.db.query(
      'work_release_all',
      `UPDATE slack_work
         SET state = ${RELEASED}, claimed_by = NULL, lease_until = NULL, last_error = $2,
             updated_at = now()
       WHERE state = 'claimed' AND claimed_by = $1`,
      [this.workerId, reason],
    );
    return result.rowCount ?? 0;
  }

  /** Deletes done rows older than retentionMs, at most SWEEP_BATCH of them; how many. */
  async sweep(retentionMs: number): Promise<number> {
    const result = await this.db.query(
      'work_sweep',
      `DELETE FROM slack_work WHERE ctid IN (
         SELECT ctid FROM slack_work
          WHERE state = 'done' AND done_at < now() - make_interval(secs => $1::float8 / 1000)
          ORDER BY done_at LIMIT ${SWEEP_BATCH})`,
      [retentionMs],
    );
    return result.rowCount ?? 0;
  }
}
