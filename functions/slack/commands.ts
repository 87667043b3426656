import type { ServerResponse as Response } from 'node:http';
import { formFields } from '../../lib/http/parse';
import {
  fixedText,
  JSON_CONTENT_TYPE,
  sendJson,
  sendText,
  type FixedText,
} from '../../lib/http/respond';
import { commandCloudEvent, commandName, interactionId } from '../../lib/slack/cloud-events';
import { slashCommandOf, type CommandAnswer } from '../../lib/slack/handlers';
import type { SlackOutcome } from '../../lib/slack/outcomes';
import {
  ack,
  answerInPlace,
  dispatchLater,
  issuedAtOf,
  refuseInvalid,
  type SlackDependencies,
  type SlackKindHandler,
} from './context';

const TOO_SLOW = 'That is taking longer than Slack waits. Please try again.';
const FAILED = 'Sorry, something went wrong.';
/** Slack does not retry a command: the person is told, and can run it again. */
const NOT_STARTED = 'Sorry, CoffeeBuddy could not start that just now. Please run it again.';
const BUSY = 'CoffeeBuddy is busy right now. Please run it again in a moment.';

/** A command's answer as Slack reads it; undefined for an empty acknowledgement. */
function messageOf(answer: CommandAnswer | undefined): Record<string, unknown> | undefined {
  if (answer === undefined) return undefined;
  if (typeof answer === 'string') {
    return answer === '' ? undefined : { response_type: 'ephemeral', text: answer };
  }
  const { text, blocks, response_type: responseType = 'ephemeral' } = answer;
  if (text === undefined && blocks === undefined) return undefined;
  // Sent as JSON, which leaves an undefined text or blocks out.
  return { response_type: responseType, text, blocks };
}

/**
 * The last fixed answer (help, an unknown command) as sent: help, the usual one, is always the
 * same text, so it is serialised and measured once, not on every request.
 */
let lastFixed: { text: string; body: FixedText } | undefined;

function fixedAnswer(text: string): FixedText {
  // Stryker disable next-line ConditionalExpression,EqualityOperator,OptionalChaining: serialising every time gives the same answer, only slower
  if (lastFixed?.text !== text) {
    lastFixed = { text, body: fixedText(JSON.stringify(messageOf(text))) };
  }
  return lastFixed.body;
}

/** The fields a command's fixed answer depends on. */
const FIXED_BY = ['command', 'text'] as const;

/**
 * Answers a command whose answer is known without running anything (help, an unknown command)
 * from its verified form's `command` and `text` alone: no form built, no context, no deadline.
 * False when the command is anything else, for `command` to answer from the whole form.
 */
export function answerFixedCommand(body: Buffer, res: Response, deps: SlackDependencies): boolean {
  const fields = formFields(body, FIXED_BY);
  // Refused, or a form without a command: `command` says so from the whole form.
  if (!fields.ok || fields.value.command === undefined || fields.value.command === '') return false;
  const known = deps.handlers.fixedAnswer(fields.value.command, fields.value.text ?? '');
  if (known === undefined) return false;
  deps.count('commands', 'ok');
  sendText(res, 200, JSON_CONTENT_TYPE, fixedAnswer(known));
  return true;
}

/** Slack's answer to the command, counted by its outcome. */
function send(
  res: Response,
  deps: SlackDependencies,
  outcome: SlackOutcome,
  reply: CommandAnswer | undefined,
): void {
  deps.count('commands', outcome);
  const message = messageOf(reply);
  if (message === undefined) ack(res);
  else sendJson(res, 200, message);
}

/**
 * POST /slack/commands: a subcommand's answer in place within Slack's 3 s (its `run`, at most
 * 2.5 s), and its work after the acknowledgement (`later`): with K_SINK published first as a
 * `com.slack.command.<name>` CloudEvent for the worker, else run here after the answer.
 */
export const command: SlackKindHandler = async (form, res, deps, req) => {
  const slash = slashCommandOf(form);
  if (slash.command === '') {
    refuseInvalid(deps, 'commands', res);
    return;
  }
  const plan = deps.handlers.planCommand(slash);
  const body = req.rawBody ?? Buffer.alloc(0);
  const issuedAt = issuedAtOf(req);
  const { publisher } = deps;
  if (plan.later.length > 0) {
    if (publisher !== undefined) {
      const event = commandCloudEvent(body, form, issuedAt);
      if (event === undefined) {
        refuseInvalid(deps, 'commands', res);
        return;
      }
      // Its fields as JSON can be larger than the form (`%01` is 3 bytes, `\u0001` 6): what the
      // worker would refuse is refused here, in front of the person.
      if (event.data.length > deps.verifier.maxBodyBytes) {
        refuseInvalid(deps, 'commands', res, 413, 'payload too large');
        return;
      }
      if (!(await publisher.publish(event)).ok) {
        send(res, deps, 'publish_failed', NOT_STARTED);
        return;
      }
    } else if (deps.lifecycle.inFlight().work >= deps.maxPendingWork) {
      deps.logger.warn('slack request refused', { kind: 'commands', outcome: 'overloaded' });
      send(res, deps, 'overloaded', BUSY);
      return;
    }
  }
  const delivery = {
    eventId: interactionId(body),
    kind: 'commands' as const,
    type: commandName(slash.command) ?? 'command',
    payload: form,
    issuedAt,
  };
  const answered =
    plan.answer === undefined
      ? { ok: true as const, value: undefined }
      : await answerInPlace(deps, plan.answer, delivery);
  if (answered.ok) send(res, deps, 'ok', answered.value);
  else if (answered.outcome === 'timeout') send(res, deps, 'ok', TOO_SLOW);
  else send(res, deps, 'handler_error', FAILED);
  if (publisher === undefined) {
    // Stryker disable next-line ConditionalExpression,EqualityOperator: an empty list dispatches nothing (no handler to run, its run settles at once as done)
    if (plan.later.length > 0) dispatchLater(deps, plan.later, delivery);
  }
};
