import type { SlackEvent } from '@slack/types';
import type { Queryable } from '../clients/postgres';
import type { ComponentStatus } from '../health';
import { withFields, type Logger } from '../logger';
import type { ReadinessReport } from '../readiness';
import type { SlackApiResult, SlackClient } from './client';
import type { RespondMessage, ResponseUrls } from './respond';

/** Slack's event types that `@slack/types` describes (`app_mention`, `reaction_added`, …). */
export type SlackEventType = SlackEvent['type'];

/** The payload of an event of type T: `@slack/types`' shape where it has one, else plain fields. */
export type EventPayload<T extends string> = T extends SlackEventType
  ? Extract<SlackEvent, { type: T }>
  : Record<string, unknown>;

/** What `say` posts: a text, or chat.postMessage's arguments (blocks, metadata, thread_ts…). */
export type SayMessage = string | (Readonly<Record<string, unknown>> & { text?: string });
export type { RespondMessage } from './respond';

/** The readiness of the process a handler runs in: each component's state, never its error. */
export interface ReadinessSummary {
  ready: boolean;
  components: Readonly<Record<string, ComponentStatus>>;
}

/**
 * What a handler is given besides the event: who and which delivery it is, and what to answer
 * Slack with. Built by the runtime for each delivery, in the worker and in process alike.
 */
export interface HandlerContext {
  /** Slack's `event_id` for an event; `sha256:<hex>` of the payload for an interaction. */
  readonly eventId: string;
  /** Slack's type (`app_mention`, `block_actions`); a command's is its name (`coffee`). */
  readonly type: string;
  readonly teamId: string | undefined;
  readonly enterpriseId: string | undefined;
  /** This run's number: the worker's claim attempts (1 the first time); 1 in process. */
  readonly attempt: number;
  /** Slack's redelivery count (`X-Slack-Retry-Num`), when Slack retried the request. */
  readonly retryNum: number | undefined;
  /** Slack's reason for it (`X-Slack-Retry-Reason`: `http_timeout`, `http_error`…). */
  readonly retryReason: string | undefined;
  /** The app's logger, every line carrying the event's `id`, `type` and `attempt` (and the request id). */
  readonly logger: Logger;
  /** Slack's Web API as this workspace's bot. */
  readonly slack: SlackClient;
  /** chat.postMessage in the event's channel, in its thread when it is in one. */
  say(message: SayMessage): Promise<SlackApiResult>;
  /**
   * Posts to the delivery's `response_url` (commands, block actions, message shortcuts, a view
   * submission whose modal asked for one): within Slack's 5 uses in 30 minutes, only to Slack's
   * hooks. Rejects when the delivery has none, past the budget, or when Slack refuses it.
   */
  respond(message: RespondMessage): Promise<void>;
  /** The readiness of this process (the worker's, with K_SINK): component names and states. */
  readiness(): Promise<ReadinessSummary>;
  /** Fires at the handler's deadline: pass it to every call that can wait. */
  readonly signal: AbortSignal;
  /** PostgreSQL, where the process has a database (the worker does). */
  readonly postgres: Queryable | undefined;
}

/** What the runtime knows of one delivery. */
export interface Delivery {
  eventId: string;
  kind: 'events' | 'interactions' | 'commands';
  type: string;
  /** The inner event (events), the payload (interactions), the form's fields (commands). */
  payload: Record<string, unknown>;
  /** The Events API envelope (events only): it holds the team and enterprise ids. */
  envelope?: Record<string, unknown>;
  attempt: number;
  retryNum?: number | undefined;
  retryReason?: string | undefined;
  /** When Slack sent it (epoch ms, its verified timestamp): its response_url's 30 minutes run from it. */
  issuedAt?: number | undefined;
  signal: AbortSignal;
}

export interface ContextDependencies {
  slack: SlackClient;
  logger: Logger;
  postgres?: Queryable | undefined;
  /** Where respond() posts. */
  responseUrls: Pick<ResponseUrls, 'respond'>;
  /** This process's readiness (cached by its checker). */
  readiness: () => Promise<ReadinessReport>;
}

type Fields = Record<string, unknown>;

const field = (value: unknown, name: string): unknown =>
  value !== null && typeof value === 'object' ? (value as Fields)[name] : undefined;

const text = (value: unknown): string | undefined =>
  typeof value === 'string' && value !== '' ? value : undefined;

/** Slack's retry count as a header or CloudEvent extension carries it: 1 to 3 digits. */
export function retryNumOf(value: string | undefined): number | undefined {
  return value !== undefined && /^\d{1,3}$/.test(value) ? Number(value) : undefined;
}

/** Slack's retry reason (`http_timeout`): short and plain, anything else is dropped. */
export function retryReasonOf(value: string | undefined): string | undefined {
  return value !== undefined && /^[a-z0-9_]{1,32}$/.test(value) ? value : undefined;
}

/** Where `say` posts: the channel and the thread of the delivery, if it has them. */
function placeOf(delivery: Delivery): { channel?: string; threadTs?: string } {
  const { payload } = delivery;
  if (delivery.kind === 'commands') return { channel: text(payload.channel_id) };
  if (delivery.kind === 'events') {
    return {
      channel: text(payload.channel) ?? text(field(payload.item, 'channel')),
      threadTs: text(payload.thread_ts),
    };
  }
  return {
    channel: text(field(payload.channel, 'id')) ?? text(field(payload.container, 'channel_id')),
    threadTs:
      text(field(payload.message, 'thread_ts')) ?? text(field(payload.container, 'thread_ts')),
  };
}

/** Where `respond` posts: a command's or an interaction's `response_url`, or a modal's first. */
function responseUrlOf(delivery: Delivery): string | undefined {
  const { payload } = delivery;
  if (delivery.kind === 'events') return undefined;
  const urls = payload.response_urls;
  return (
    text(payload.response_url) ??
    (Array.isArray(urls) ? text(field(urls[0], 'response_url')) : undefined)
  );
}

/** The workspace of a delivery: the envelope's (events), the form's (commands), the payload's. */
function workspaceOf(delivery: Delivery): { teamId?: string; enterpriseId?: string } {
  const { payload, envelope } = delivery;
  switch (delivery.kind) {
    case 'events':
      return { teamId: text(envelope?.team_id), enterpriseId: text(envelope?.enterprise_id) };
    case 'commands':
      return { teamId: text(payload.team_id), enterpriseId: text(payload.enterprise_id) };
    case 'interactions':
      return {
        teamId: text(field(payload.team, 'id')) ?? text(field(payload.user, 'team_id')),
        enterpriseId: text(field(payload.enterprise, 'id')),
      };
  }
}

/** Each component's state, without latencies or error texts. */
function summaryOf(report: ReadinessReport): ReadinessSummary {
  const components: Record<string, ComponentStatus> = {};
  for (const [name, health] of Object.entries(report.components)) components[name] = health.status;
  return { ready: report.ready, components };
}

/** The context a delivery's handlers share. */
export function handlerContext(delivery: Delivery, deps: ContextDependencies): HandlerContext {
  const { teamId, enterpriseId } = workspaceOf(delivery);
  const { channel, threadTs } = placeOf(delivery);
  const { slack } = deps;
  const { signal } = delivery;
  return {
    eventId: delivery.eventId,
    type: delivery.type,
    teamId,
    enterpriseId,
    attempt: delivery.attempt,
    retryNum: delivery.retryNum,
    retryReason: delivery.retryReason,
    logger: withFields(deps.logger, {
      id: delivery.eventId,
      type: delivery.type,
      attempt: delivery.attempt,
    }),
    slack,
    say: (message) => {
      if (channel === undefined) {
        return Promise.reject(new Error(`say: this ${delivery.type} names no channel`));
      }
      const args = typeof message === 'string' ? { text: message } : message;
      return slack.call(
        'chat.postMessage',
        // Stryker disable next-line ConditionalExpression: Slack's Web API client drops a field set to undefined as if absent
        { channel, ...(threadTs === undefined ? {} : { thread_ts: threadTs }), ...args },
        { signal },
      );
    },
    respond: (message) => {
      const url = responseUrlOf(delivery);
      if (url === undefined) {
        return Promise.reject(new Error(`respond: this ${delivery.type} has no response_url`));
      }
      return deps.responseUrls.respond(url, delivery.issuedAt, message, signal);
    },
    readiness: () => deps.readiness().then(summaryOf),
    signal,
    postgres: deps.postgres,
  };
}
