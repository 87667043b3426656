import { parseJson } from '../../lib/http/parse';
import {
  ack,
  dispatchLater,
  refuseInvalid,
  refuseWhenBusy,
  text,
  type Fields,
  type SlackKindHandler,
} from './context';

/** The interaction in a form's `payload` field, when it is a JSON object with a type. */
function payloadOf(form: Fields): (Fields & { type: string }) | undefined {
  const parsed = parseJson(text(form.payload));
  if (!parsed.ok) return undefined;
  const { value } = parsed;
  if (value !== null && typeof value === 'object' && typeof (value as Fields).type === 'string') {
    return value as Fields & { type: string };
  }
  return undefined;
}

/** POST /slack/interactions: acknowledges the interaction, then dispatches it. */
export const interaction: SlackKindHandler = (form, res, deps) => {
  const payload = payloadOf(form);
  if (payload === undefined) {
    refuseInvalid(deps, 'interactions', res);
    return;
  }
  const { type } = payload;
  const handlers = deps.handlers.handlersForInteraction(type);
  if (refuseWhenBusy(deps, 'interactions', res, handlers)) return;
  deps.count('interactions', 'ok');
  ack(res);
  dispatchLater(deps, handlers, payload, () => {
    deps.count('interactions', 'handler_error');
    deps.logger.error('interaction handler failed', { type });
  });
};
