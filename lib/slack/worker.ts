import { errorName, reasonOf } from '../errors';
import type { ReceivedEvent, TakeResult } from '../eventing/event';
import type { Lifecycle } from '../lifecycle';
import type { Logger } from '../logger';
import { SLACK_EVENT_TYPE_PREFIX, SLACK_INTERACTION_TYPE_PREFIX } from './cloud-events';
import type { SlackHandlers } from './handlers';
import type { WorkKind, WorkOutcome } from './outcomes';
import type { WorkMetrics } from './work-metrics';
import type { WorkStore } from './work-store';

/** The retention sweep runs at most this often, after work is done. */
const SWEEP_INTERVAL_MS = 60_000;

/** The `kind` label of an event's type. */
export function kindOf(type: string): WorkKind {
  if (type.startsWith(SLACK_EVENT_TYPE_PREFIX)) return 'events';
  if (type.startsWith(SLACK_INTERACTION_TYPE_PREFIX)) return 'interactions';
  return 'unknown';
}

/**
 * What became of one event, and the status Knative is answered with: 204 done or duplicate; 409
 * busy; 500 failed; 400 invalid; 503 unavailable.
 */
export interface WorkResult extends TakeResult {
  outcome: WorkOutcome;
}

const RESULTS: Record<
  Exclude<WorkOutcome, 'dead_lettered' | 'ignored' | 'overloaded'>,
  WorkResult
> = {
  done: { outcome: 'done', status: 204 },
  duplicate: { outcome: 'duplicate', status: 204 },
  busy: { outcome: 'busy', status: 409, error: 'another worker holds this event' },
  failed: { outcome: 'failed', status: 500, error: 'handler failed' },
  invalid: { outcome: 'invalid', status: 400, error: 'invalid event' },
  unavailable: { outcome: 'unavailable', status: 503, error: 'database unavailable' },
};

type Run = (input: Record<string, unknown>) => void | Promise<void>;

/** The handlers registered for an event and what they are given, or why there are none. */
function planOf(
  event: ReceivedEvent,
  handlers: SlackHandlers,
): { kind: WorkKind; run: readonly Run[]; input: Record<string, unknown> } | string {
  const kind = kindOf(event.type);
  const data = event.data;
  if (data === null || typeof data !== 'object' || Array.isArray(data))
    return 'data is not an object';
  const fields = data as Record<string, unknown>;
  if (kind === 'events') {
    const slackType = event.type.slice(SLACK_EVENT_TYPE_PREFIX.length);
    const inner: unknown = fields.event;
    if (
      inner === null ||
      typeof inner !== 'object' ||
      (inner as Record<string, unknown>).type !== slackType
    ) {
      return 'data is not the envelope of an event of this type';
    }
    return {
      kind,
      run: handlers.handlersForEvent(slackType),
      input: inner as Record<string, unknown>,
    };
  }
  if (kind === 'interactions') {
    const slackType = event.type.slice(SLACK_INTERACTION_TYPE_PREFIX.length);
    if (fields.type !== slackType) return 'data is not an interaction of this type';
    return { kind, run: handlers.handlersForInteraction(slackType), input: fields };
  }
  return 'not a Slack event type';
}

export interface SlackWorkerOptions {
  store: WorkStore;
  handlers: SlackHandlers;
  /** Handlers still running after their timeout are tracked here, so that the drain waits. */
  lifecycle: Lifecycle;
  logger: Logger;
  metrics: WorkMetrics;
  /** Longest one event's handlers may run before the attempt counts as failed. */
  handlerTimeoutMs: number;
  /** How long a claim holds before another worker may take the event over. */
  leaseMs: number;
  /** How long done events are remembered. */
  retentionMs: number;
}

/**
 * Runs the SlackHandlers registered for each event Knative Eventing delivers, once per event
 * across every worker: the event is claimed in PostgreSQL (WorkStore) before its handlers run,
 * recorded done after, released when they fail, so Knative's retry runs them again.
 */
export class SlackWorker {
  private lastSweepAt = Number.NEGATIVE_INFINITY;

  constructor(private readonly options: SlackWorkerOptions) {}

  async handle(event: ReceivedEvent): Promise<WorkResult> {
    const { store, logger, metrics } = this.options;
    const plan = planOf(event, this.options.handlers);
    if (typeof plan === 'string') {
      logger.warn('slack event refused', { id: event.id, type: event.type, reason: plan });
      metrics.observeWork(kindOf(event.type), 'invalid');
      return { ...RESULTS.invalid, error: plan };
    }
    const { kind } = plan;
    const count = (result: WorkResult) => {
      metrics.observeWork(kind, result.outcome);
      return result;
    };
    // Nothing registered for this type: nothing to run, nothing to remember.
    if (plan.run.length === 0) return count(RESULTS.done);

    let attempts: number;
    try {
      const claim = await store.claim(event, event.type, this.options.leaseMs);
      if (!claim.claimed) return count(claim.state === 'done' ? RESULTS.duplicate : RESULTS.busy);
      attempts = claim.attempts;
    } catch (error) {
      logger.warn('slack work unavailable', { id: event.id, reason: reasonOf(error) });
      return count(RESULTS.unavailable);
    }

    const started = performance.now();
    const failure = await this.run(plan.run, plan.input);
    const seconds = (performance.now() - started) / 1000;
    metrics.observeHandlers(kind, failure === undefined ? 'done' : 'failed', seconds);
    if (failure !== undefined) {
      logger.error('slack handler failed', {
        id: event.id,
        type: event.type,
        attempt: attempts,
        error: failure,
      });
      await store.release(event, failure).catch((error: unknown) => {
        // The lease ends by itself: the event is taken again after it.
        logger.warn('slack work not released', { id: event.id, reason: reasonOf(error) });
      });
      return count(RESULTS.failed);
    }
    try {
      if (!(await store.complete(event))) {
        logger.warn('slack work done after its lease ended', { id: event.id, attempt: attempts });
      }
    } catch (error) {
      // Done but not recorded: Knative retries, and the event runs again once the lease ends.
      logger.warn('slack work not recorded', { id: event.id, reason: reasonOf(error) });
      return count(RESULTS.unavailable);
    }
    this.sweepNowAndThen();
    return count(RESULTS.done);
  }

  /** Gives back every event this worker still holds: the drain calls it after requests end. */
  async close(): Promise<void> {
    try {
      const released = await this.options.store.releaseAll('shutdown');
      if (released > 0) this.options.logger.warn('slack work released at shutdown', { released });
    } catch (error) {
      this.options.logger.warn('slack work not released at shutdown', {
        reason: reasonOf(error),
      });
    }
  }

  /**
   * Runs every handler and waits for all of them (one failing does not leave the others running
   * unseen); why the attempt failed (the first failure's error name, or the timeout), if it did.
   */
  private async run(
    run: readonly Run[],
    input: Record<string, unknown>,
  ): Promise<string | undefined> {
    const all = Promise.allSettled(
      run.map((handler) => Promise.resolve().then(() => handler(input))),
    );
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => {
        resolve('timeout');
      }, this.options.handlerTimeoutMs);
    });
    try {
      const outcome = await Promise.race([all, timeout]);
      if (outcome === 'timeout') {
        // Handlers cannot be stopped: those still running are waited for by the drain.
        void this.options.lifecycle.track(all);
        return 'timeout';
      }
      const failed = outcome.find((result) => result.status === 'rejected');
      return failed === undefined ? undefined : errorName(failed.reason);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Deletes done events past their retention, at most once a minute, in the background. */
  private sweepNowAndThen(): void {
    const now = performance.now();
    if (now - this.lastSweepAt < SWEEP_INTERVAL_MS) return;
    this.lastSweepAt = now;
    const { store, lifecycle, logger, retentionMs } = this.options;
    void lifecycle.track(
      store.sweep(retentionMs).then(
        (deleted) => {
          if (deleted > 0) logger.info('slack work swept', { deleted });
        },
        (error: unknown) => {
          logger.warn('slack work not swept', { reason: reasonOf(error) });
        },
      ),
    );
  }
}
