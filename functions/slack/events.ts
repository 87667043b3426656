import { sendJson } from '../../lib/http/respond';
import { ack, dispatchLater, header, text, type Fields, type SlackKindHandler } from './context';

/** POST /slack/events: answers url_verification, acknowledges events, then dispatches them. */
export const event: SlackKindHandler = (req, res, deps) => {
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
  const seen = deps.recentEvents.checkAndRecord(eventId);
  if (seen && header(req, 'x-slack-retry-num') !== undefined) {
    deps.count('events', 'retry_duplicate');
    ack(res);
    return;
  }
  deps.count('events', 'ok');
  ack(res);
  dispatchLater(deps, deps.handlers.handlersForEvent(inner.type), inner, () => {
    deps.count('events', 'handler_error');
    deps.logger.error('event handler failed', { type: inner.type });
  });
};
