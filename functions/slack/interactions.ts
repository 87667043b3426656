import type { ServerResponse as Response } from 'node:http';
import { parseJson } from '../../lib/http/parse';
import { sendJson } from '../../lib/http/respond';
import { interactionCloudEvent, interactionId } from '../../lib/slack/cloud-events';
import type { InteractionPayload } from '../../lib/slack/handlers';
import {
  ack,
  answerInPlace,
  dispatchLater,
  issuedAtOf,
  publishOrRefuse,
  refuseInvalid,
  refuseWhenBusy,
  text,
  type Fields,
  type SlackKindHandler,
} from './context';

/** The interaction in a form's `payload` field, when it is a JSON object with a type. */
function payloadOf(form: Fields): InteractionPayload | undefined {
  const parsed = parseJson(text(form.payload));
  if (!parsed.ok) return undefined;
  const { value } = parsed;
  if (value !== null && typeof value === 'object' && typeof (value as Fields).type === 'string') {
    return value as InteractionPayload;
  }
  return undefined;
}

/** An external select that gets no options shows none: what Slack is answered when none came. */
const NO_OPTIONS = { options: [] };

/** Slack's answer when nothing was answered in place: no options for a select, else empty. */
function answerNothing(res: Response, payload: InteractionPayload): void {
  if (payload.type === 'block_suggestion') sendJson(res, 200, NO_OPTIONS);
  else ack(res);
}

/**
 * POST /slack/interactions: routed by type and `action_id` or `callback_id`. An answer in place
 * (a modal's `response_action`, a select's options) runs first, within 2.5 s, and is Slack's
 * answer; the work after the acknowledgement is published first with K_SINK, else run here after
 * the answer. An interaction nothing handles is acknowledged and counted `unhandled`.
 */
export const interaction: SlackKindHandler = async (form, res, deps, req) => {
  const payload = payloadOf(form);
  if (payload === undefined) {
    refuseInvalid(deps, 'interactions', res);
    return;
  }
  const plan = deps.handlers.planInteraction(payload);
  if (plan === undefined) {
    deps.count('interactions', 'unhandled');
    answerNothing(res, payload);
    return;
  }
  const payloadText = text(form.payload);
  const issuedAt = issuedAtOf(req);
  const delivery = {
    eventId: interactionId(payloadText),
    kind: 'interactions' as const,
    type: payload.type,
    payload,
    issuedAt,
  };
  let answer: Fields | undefined;
  if (plan.answer !== undefined) {
    const answered = await answerInPlace(deps, plan.answer, delivery);
    if (!answered.ok) {
      deps.count('interactions', 'handler_error');
      // A modal shows Slack's error and stays open, so that the person can submit it again.
      if (payload.type === 'block_suggestion') sendJson(res, 200, NO_OPTIONS);
      else sendJson(res, 503, { error: 'temporarily unavailable' });
      return;
    }
    answer = answered.value;
  }
  // A submission refused with errors is not done: nothing runs after it.
  const later = answer?.response_action === 'errors' ? [] : plan.later;
  const { publisher } = deps;
  if (later.length > 0) {
    if (publisher !== undefined) {
      const cloudEvent = interactionCloudEvent(payloadText, payload, issuedAt);
      if (cloudEvent === undefined) {
        refuseInvalid(deps, 'interactions', res);
        return;
      }
      if (!(await publishOrRefuse(deps, 'interactions', res, publisher, cloudEvent))) return;
    } else if (refuseWhenBusy(deps, 'interactions', res, later)) {
      return;
    }
  }
  deps.count('interactions', 'ok');
  if (answer === undefined) answerNothing(res, payload);
  else sendJson(res, 200, answer);
  if (later.length > 0 && publisher === undefined) dispatchLater(deps, later, delivery);
};
