import { sendJson } from '../../lib/http/respond';
import {
  ack,
  dispatchLater,
  refuseInvalid,
  refuseWhenBusy,
  text,
  type Fields,
  type SlackKindHandler,
} from './context';

/**
 * Slack's event ids are short and alphanumeric (`Ev0PV52K25`); anything else is refused before it
 * is remembered, so the ids kept to recognise retries are bounded in bytes, not only in count.
 */
const EVENT_ID = /^[A-Za-z0-9]{1,64}$/;

/** POST /slack/events: answers url_verification, acknowledges events, then dispatches them. */
export const event: SlackKindHandler = async (envelope, res, deps) => {
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
  dispatchLater(deps, handlers, inner, () => {
    deps.count('events', 'handler_error');
    deps.logger.error('event handler failed', { type: inner.type });
  });
};
