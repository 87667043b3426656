import { sendJson } from '../../lib/http/respond';
import {
  ack,
  dispatchLater,
  overloaded,
  text,
  type Fields,
  type SlackKindHandler,
} from './context';

/** POST /slack/events: answers url_verification, acknowledges events, then dispatches them. */
export const event: SlackKindHandler = async (req, res, deps) => {
  const envelope = (req.body ?? {}) as Fields;
  if (envelope.type === 'url_verification' && typeof envelope.challenge === 'string') {
    deps.count('events', 'url_verification');
    sendJson(res, 200, { challenge: envelope.challenge });
    return;
  }
  const inner = envelope.event as Fields | undefined;
  const eventId = text(envelope.event_id);
  if (envelope.type !== 'event_callback' || eventId === '' || typeof inner?.type !== 'string') {
    deps.count('events', 'invalid_payload');
    sendJson(res, 400, { error: 'invalid payload' });
    return;
  }
  const handlers = deps.handlers.handlersForEvent(inner.type);
  if (overloaded(deps, 'events', res, handlers)) return;
  // A delivery seen before, retried by Slack or not, is acknowledged and not handled again.
  if (await deps.seenEvents.checkAndRecord(eventId)) {
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
