import { sendJson } from '../../lib/http/respond';
import {
  ack,
  dispatchLater,
  overloaded,
  text,
  type Fields,
  type SlackKindHandler,
} from './context';

/** The interaction in a form's `payload` field, when it is a JSON object with a type. */
function payloadOf(body: unknown): (Fields & { type: string }) | undefined {
  try {
    const parsed: unknown = JSON.parse(text((body as Fields | undefined)?.payload));
    if (
      parsed !== null &&
      typeof parsed === 'object' &&
      typeof (parsed as Fields).type === 'string'
    ) {
      return parsed as Fields & { type: string };
    }
  } catch {
    // not JSON: no payload
  }
  return undefined;
}

/** POST /slack/interactions: acknowledges the interaction, then dispatches it. */
export const interaction: SlackKindHandler = (req, res, deps) => {
  const payload = payloadOf(req.body);
  if (payload === undefined) {
    deps.count('interactions', 'invalid_payload');
    sendJson(res, 400, { error: 'invalid payload' });
    return;
  }
  const { type } = payload;
  const handlers = deps.handlers.handlersForInteraction(type);
  if (overloaded(deps, 'interactions', res, handlers)) return;
  deps.count('interactions', 'ok');
  ack(res);
  dispatchLater(deps, handlers, payload, () => {
    deps.count('interactions', 'handler_error');
    deps.logger.error('interaction handler failed', { type });
  });
};
