import type { ServerResponse as Response } from 'node:http';
import type { Publisher } from '../../lib/eventing/publisher';
import { sendJson } from '../../lib/http/respond';
import { eventCloudEvent } from '../../lib/slack/cloud-events';
import {
  ack,
  dispatchLater,
  publishOrRefuse,
  refuseInvalid,
  refuseWhenBusy,
  slackRetryOf,
  text,
  type Fields,
  type SlackDependencies,
  type SlackKindHandler,
} from './context';

/**
 * Slack's event ids are short and alphanumeric (`Ev0PV52K25`); anything else is refused before it
 * is remembered, so the ids kept to recognise retries are bounded in bytes, not only in count.
 */
const EVENT_ID = /^[A-Za-z0-9]{1,64}$/;

/**
 * With K_SINK: the verified body is published as Slack sent it, and Slack acknowledged once the
 * sink has it.
 * The event id is remembered only then, so Slack's retry of a failed publish is published again.
 */
async function publishEvent(
  envelope: Fields,
  body: Buffer,
  eventId: string,
  type: string,
  res: Response,
  deps: SlackDependencies,
  publisher: Publisher,
  retry: ReturnType<typeof slackRetryOf>,
): Promise<void> {
  const cloudEvent = eventCloudEvent(envelope, body, eventId, type, retry);
  if (cloudEvent === undefined) {
    refuseInvalid(deps, 'events', res);
    return;
  }
  // Published by this pod before: acknowledged, not published again (the worker takes each id once).
  if (await deps.seenEvents.has(eventId)) {
    deps.count('events', 'retry_duplicate');
    ack(res);
    return;
  }
  if (!(await publishOrRefuse(deps, 'events', res, publisher, cloudEvent))) return;
  await deps.seenEvents.record(eventId);
  deps.count('events', 'ok');
  ack(res);
}

/**
 * POST /slack/events: answers url_verification; acknowledges events, then dispatches them, or
 * with K_SINK publishes them before the acknowledgement.
 */
export const event: SlackKindHandler = async (envelope, res, deps, req) => {
  if (envelope.type === 'url_verification' && typeof envelope.challenge === 'string') {
    deps.count('events', 'url_verification');
    sendJson(res, 200, { challenge: envelope.challenge });
    return;
  }
  const inner = envelope.event as Fields | undefined;
  const eventId = text(envelope.event_id);
  if (
    envelope.type !== 'event_callback' ||
    !EVENT_ID.test(eventId) ||
    typeof inner?.type !== 'string'
  ) {
    refuseInvalid(deps, 'events', res);
    return;
  }
  if (deps.publisher !== undefined) {
    await publishEvent(
      envelope,
      req.rawBody ?? Buffer.alloc(0),
      eventId,
      inner.type,
      res,
      deps,
      deps.publisher,
      slackRetryOf(req),
    );
    return;
  }
  const handlers = deps.handlers.handlersForEvent(inner.type);
  if (refuseWhenBusy(deps, 'events', res, handlers)) return;
  // A delivery seen before, retried by Slack or not, is acknowledged and not handled again.
  // Asked and recorded in one step, so that a retry racing the first delivery is still a duplicate.
  const [seen] = await Promise.all([deps.seenEvents.has(eventId), deps.seenEvents.record(eventId)]);
  if (seen) {
    deps.count('events', 'retry_duplicate');
    ack(res);
    return;
  }
  deps.count('events', 'ok');
  ack(res);
  dispatchLater(deps, handlers, {
    eventId,
    kind: 'events',
    type: inner.type,
    payload: inner,
    envelope,
    ...slackRetryOf(req),
  });
};
