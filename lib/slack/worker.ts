import { randomUUID } from 'node:crypto';
import type { Queryable } from '../clients/postgres';
import { reasonOf } from '../errors';
import type { ReceivedEvent, TakeResult } from '../eventing/event';
import type { Lifecycle } from '../lifecycle';
import type { Logger } from '../logger';
import { currentContext, runInContext, traceIdOf, type RequestContext } from '../request-context';
import type { SlackClient } from './client';
import type { ReadinessReport } from '../readiness';
import {
  commandName,
  SLACK_COMMAND_TYPE_PREFIX,
  SLACK_EVENT_TYPE_PREFIX,
  SLACK_INTERACTION_TYPE_PREFIX,
  SLACK_RETRY_NUM_EXTENSION,
  SLACK_RETRY_REASON_EXTENSION,
} from './cloud-events';
import { retryNumOf, retryReasonOf, type Delivery } from './context';
import { slashCommandOf, type Handler, type SlackHandlers } from './handlers';
import type { ResponseUrls } from './respond';
import { failureFields, failureReason, runHandlers } from './run';
import type { WorkKind, WorkOutcome } from './outcomes';
import type { WorkMetrics } from './work-metrics';
import type { WorkStore } from './work-store';

/** The retention sweep runs at most this often, after work is done. */
const SWEEP_INTERVAL_MS = 60_000;

/** The `kind` label of an event's type. */
export function kindOf(type: string): WorkKind {
  if (type.startsWith(SLACK_EVENT_TYPE_PREFIX)) return 'events';
  if (type.startsWith(SLACK_INTERACTION_TYPE_PREFIX)) return 'interactions';
  if (type.startsWith(SLACK_COMMAND_TYPE_PREFIX)) return 'commands';
  return 'unknown';
}

/**
 * What became of one event, and the status Knative is answered with: 204 done or duplicate; 409
 * busy; 500 failed; 429 rate limited (with Retry-After); 400 invalid; 503 unavailable.
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
  rate_limited: { outcome: 'rate_limited', status: 429, error: 'rate limited by Slack' },
  // Its error is always the plan's reason.
  invalid: { outcome: 'invalid', status: 400 },
  unavailable: { outcome: 'unavailable', status: 503, error: 'database unavailable' },
};

interface Plan {
  kind: WorkKind;
  run: readonly Handler[];
  delivery: Omit<Delivery, 'signal' | 'attempt'>;
}

/** Slack's retry number and reason, and when Slack sent it, as the ingress added them. */
function retryOf(event: ReceivedEvent): Pick<Delivery, 'retryNum' | 'retryReason' | 'issuedAt'> {
  // Stryker disable next-line StringLiteral: any text that is no date parses as NaN, as '' does
  const issuedAt = Date.parse(event.attributes.time ?? '');
  return {
    retryNum: retryNumOf(event.attributes[SLACK_RETRY_NUM_EXTENSION]),
    retryReason: retryReasonOf(event.attributes[SLACK_RETRY_REASON_EXTENSION]),
    ...(Number.isNaN(issuedAt) ? {} : { issuedAt }),
  };
}

/** The handlers registered for an event and what they are given, or why there are none. */
function planOf(event: ReceivedEvent, handlers: SlackHandlers): Plan | string {
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
      delivery: {
        eventId: event.id,
        kind,
        type: slackType,
        payload: inner as Record<string, unknown>,
        envelope: fields,
        ...retryOf(event),
      },
    };
  }
  if (kind === 'interactions') {
    const slackType = event.type.slice(SLACK_INTERACTION_TYPE_PREFIX.length);
    if (fields.type !== slackType) return 'data is not an interaction of this type';
    const payload = fields as Record<string, unknown> & { type: string };
    return {
      kind,
      run: handlers.planInteraction(payload)?.later ?? [],
      delivery: { eventId: event.id, kind, type: slackType, payload, ...retryOf(event) },
    };
  }
  if (kind === 'commands') {
    const name = event.type.slice(SLACK_COMMAND_TYPE_PREFIX.length);
    if (typeof fields.command !== 'string' || commandName(fields.command) !== name) {
      return 'data is not a command of this type';
    }
    return {
      kind,
      run: handlers.planCommand(slashCommandOf(fields)).later,
      delivery: { eventId: event.id, kind, type: name, payload: fields, ...retryOf(event) },
    };
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
  /** Handlers' Slack Web API client. */
  slack: SlackClient;
  /** Handlers' PostgreSQL (the work table's database). */
  postgres: Queryable;
  /** Where handlers' respond() posts. */
  responseUrls: Pick<ResponseUrls, 'respond'>;
  /** This process's readiness, for handlers that report it. */
  readiness: () => Promise<ReadinessReport>;
  /** Removes known secrets from what is kept of a failure in the work table. */
  redact: (text: string) => string;
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
    const delivery = { ...plan.delivery, attempt: attempts };
    const result = await runInContext(deliveryContext(event), () =>
      runHandlers(plan.run, delivery, {
        slack: this.options.slack,
        postgres: this.options.postgres,
        responseUrls: this.options.responseUrls,
        readiness: this.options.readiness,
        logger,
        lifecycle: this.options.lifecycle,
        timeoutMs: this.options.handlerTimeoutMs,
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    const handlerOutcome =
      result.outcome === 'done' || result.outcome === 'rate_limited' ? result.outcome : 'failed';
    metrics.observeHandlers(kind, handlerOutcome, seconds);
    if (result.outcome !== 'done') {
      const fields = failureFields(delivery, result);
      if (result.outcome === 'rate_limited') logger.warn('slack handler rate limited', fields);
      else logger.error('slack handler failed', fields);
      await store
        .release(event, this.options.redact(failureReason(result)))
        .catch((error: unknown) => {
          // The lease ends by itself: the event is taken again after it.
          logger.warn('slack work not released', { id: event.id, reason: reasonOf(error) });
        });
      // Rate limited: Knative waits Retry-After (delivery-retryafter) for every worker, not this one.
      return result.outcome === 'rate_limited'
        ? count({ ...RESULTS.rate_limited, retryAfterSeconds: result.retryAfterSeconds })
        : count(RESULTS.failed);
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

  /** Deletes done events past their retention, at most once a minute, in the background. */
  private sweepNowAndThen(): void {
    const now = performance.now();
    // Stryker disable next-line EqualityOperator: <= differs only at exactly 60 s, a sweep 0 ms sooner
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

/**
 * The request context the handlers run in: the delivery's own (behind the image's entry), else a
 * new one (served alone by functions-framework), with the event's `traceparent` extension as its
 * trace id when the request had none.
 */
function deliveryContext(event: ReceivedEvent): RequestContext {
  const current = currentContext() ?? { requestId: randomUUID() };
  if (current.traceId !== undefined) return current;
  const traceId = traceIdOf(event.attributes.traceparent);
  // Stryker disable next-line ConditionalExpression: a traceId of undefined is no traceId (lines drop it)
  return traceId === undefined ? current : { ...current, traceId };
}
