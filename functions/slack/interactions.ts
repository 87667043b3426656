import { parseJson } from '../../lib/http/parse';
import { interactionCloudEvent, interactionId } from '../../lib/slack/cloud-events';
import {
  ack,
  dispatchLater,
  publishOrRefuse,
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

/**
 * POST /slack/interactions: acknowledges the interaction, then dispatches it, or with K_SINK
 * publishes it before the acknowledgement.
 */
export const interaction: SlackKindHandler = async (form, res, deps) => {
  const payload = payloadOf(form);
  if (payload === undefined) {
    refuseInvalid(deps, 'interactions', res);
    return;
  }
  const { publisher } = deps;
  if (publisher !== undefined) {
    const cloudEvent = interactionCloudEvent(text(form.payload), payload);
    if (cloudEvent === undefined) {
      refuseInvalid(deps, 'interactions', res);
    } else if (await publishOrRefuse(deps, 'interactions', res, publisher, cloudEvent)) {
      deps.count('interactions', 'ok');
      ack(res);
    }
    return;
  }
  const { type } = payload;
  const handlers = deps.handlers.handlersForInteraction(type);
  if (refuseWhenBusy(deps, 'interactions', res, handlers)) return;
  deps.count('interactions', 'ok');
  ack(res);
  dispatchLater(deps, handlers, {
    eventId: interactionId(text(form.payload)),
    kind: 'interactions',
    type,
    payload,
  });
};
