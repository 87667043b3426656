import crypto from 'node:crypto';
import type { EventToPublish } from '../eventing/publisher';

/** CloudEvent types: the prefix and Slack's own type (`com.slack.event.app_mention`). */
export const SLACK_EVENT_TYPE_PREFIX = 'com.slack.event.';
export const SLACK_INTERACTION_TYPE_PREFIX = 'com.slack.interaction.';
export const SLACK_COMMAND_TYPE_PREFIX = 'com.slack.command.';
/**
 * Extensions the ingress adds when Slack retried a delivery (`X-Slack-Retry-Num`, `-Reason`).
 * Extension names are [a-z0-9] only; the id stays Slack's event_id, so a retry is the same event.
 */
export const SLACK_RETRY_NUM_EXTENSION = 'slackretrynum';
export const SLACK_RETRY_REASON_EXTENSION = 'slackretryreason';
/** The source of a request whose workspace cannot be told. */
export const UNKNOWN_SOURCE = 'unknown';

/** Slack's team and enterprise ids (`T0001`, `E0001`): anything else names no workspace. */
const WORKSPACE_ID = /^[A-Z0-9]{1,32}$/;
/**
 * Slack's type names (`app_mention`, `block_actions`): a type is sent as a `ce-type` header and
 * matched by Trigger filters, so anything else is not published.
 */
const SLACK_TYPE = /^[A-Za-z0-9_.-]{1,64}$/;

type Fields = Record<string, unknown>;

const field = (value: unknown, name: string): unknown =>
  value !== null && typeof value === 'object' ? (value as Fields)[name] : undefined;

/** `https://slack.com/teams/<id>` for the first candidate that is a workspace id, else `unknown`. */
export function slackSource(...candidates: unknown[]): string {
  const id = candidates.find(
    (candidate): candidate is string =>
      typeof candidate === 'string' && WORKSPACE_ID.test(candidate),
  );
  return id === undefined ? UNKNOWN_SOURCE : `https://slack.com/teams/${id}`;
}

/**
 * A verified Events API `event_callback` as a CloudEvent: Slack's event_id as its id, the whole
 * envelope as its data, the verified `body` itself (so it can only grow by its attributes).
 * Undefined when the event's type cannot be a CloudEvent type.
 */
export function eventCloudEvent(
  envelope: Fields,
  body: Buffer,
  eventId: string,
  eventType: string,
  retry: { retryNum?: number | undefined; retryReason?: string | undefined } = {},
): EventToPublish | undefined {
  if (!SLACK_TYPE.test(eventType)) return undefined;
  const extensions: Record<string, string> = {};
  if (retry.retryNum !== undefined) extensions[SLACK_RETRY_NUM_EXTENSION] = String(retry.retryNum);
  if (retry.retryReason !== undefined) extensions[SLACK_RETRY_REASON_EXTENSION] = retry.retryReason;
  return {
    id: eventId,
    type: `${SLACK_EVENT_TYPE_PREFIX}${eventType}`,
    source: slackSource(envelope.team_id, envelope.enterprise_id),
    data: body,
    ...(Object.keys(extensions).length === 0 ? {} : { extensions }),
  };
}

/** An interaction's id: the hash of the `payload` text as Slack sent it; a command's, of its body. */
export function interactionId(payloadText: string | Buffer): string {
  return `sha256:${crypto.createHash('sha256').update(payloadText).digest('hex')}`;
}

/** A verified request's timestamp (seconds) as a CloudEvent `time`. */
const timeOf = (issuedAt: number | undefined): { time?: string } =>
  issuedAt === undefined ? {} : { time: new Date(issuedAt).toISOString() };

/** A slash command's name without its slash (`/coffee` → `coffee`), if it can be a type. */
export function commandName(command: string): string | undefined {
  if (!command.startsWith('/')) return undefined;
  const name = command.slice(1);
  return SLACK_TYPE.test(name) ? name : undefined;
}

/**
 * A verified slash command as a CloudEvent: its id is the hash of the body as Slack sent it (the
 * same delivery, the same id), its type names the command, its data is the form's fields as JSON
 * (Slack's names and values, strings only), its time the request's timestamp.
 */
export function commandCloudEvent(
  body: Buffer,
  form: Readonly<Record<string, unknown>>,
  issuedAt: number | undefined,
): EventToPublish | undefined {
  if (typeof form.command !== 'string') return undefined;
  const name = commandName(form.command);
  if (name === undefined) return undefined;
  const fields: Record<string, string> = {};
  for (const [key, value] of Object.entries(form)) {
    if (typeof value === 'string') fields[key] = value;
  }
  return {
    id: interactionId(body),
    type: `${SLACK_COMMAND_TYPE_PREFIX}${name}`,
    source: slackSource(form.team_id, form.enterprise_id),
    data: Buffer.from(JSON.stringify(fields)),
    ...timeOf(issuedAt),
  };
}

/**
 * A verified interaction as a CloudEvent: its id is the hash of the `payload` text as Slack sent
 * it, so the same delivery always gets the same id; that text is its data, as sent; its time the
 * request's timestamp (from which its response_url's 30 minutes run).
 */
export function interactionCloudEvent(
  payloadText: string,
  payload: Fields & { type: string },
  issuedAt?: number,
): EventToPublish | undefined {
  if (!SLACK_TYPE.test(payload.type)) return undefined;
  return {
    id: interactionId(payloadText),
    type: `${SLACK_INTERACTION_TYPE_PREFIX}${payload.type}`,
    source: slackSource(
      field(payload.team, 'id'),
      field(payload.user, 'team_id'),
      field(payload.enterprise, 'id'),
    ),
    data: Buffer.from(payloadText),
    ...timeOf(issuedAt),
  };
}
