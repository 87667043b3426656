import { errorDetails } from '../../lib/errors';
import { sendJson } from '../../lib/http/respond';
import type { SlashCommand } from '../../lib/slack/handlers';
import type { SlackOutcome } from '../../lib/slack/outcomes';
import { refuseInvalid, text, type SlackKindHandler } from './context';

const TOO_SLOW = 'That is taking longer than Slack waits. Please try again.';

/** POST /slack/commands: answers the slash command with an ephemeral message within Slack's 3 s. */
export const command: SlackKindHandler = async (form, res, deps) => {
  const slash: SlashCommand = {
    command: text(form.command),
    text: text(form.text),
    userId: text(form.user_id),
    channelId: text(form.channel_id),
    teamId: text(form.team_id),
    responseUrl: text(form.response_url),
  };
  if (slash.command === '') {
    refuseInvalid(deps, 'commands', res);
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  const tooSlow = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => {
      resolve(undefined);
    }, deps.commandTimeoutMs);
  });
  let answer: string;
  let outcome: SlackOutcome = 'ok';
  try {
    answer =
      (await Promise.race([
        Promise.resolve().then(() => deps.handlers.runCommand(slash)),
        tooSlow,
      ])) ?? TOO_SLOW;
  } catch (error) {
    outcome = 'handler_error';
    // A feature's failure: what a person on call needs, with the secrets the logger removes.
    deps.logger.error('slash command failed', {
      command: slash.command,
      error: errorDetails(error),
    });
    answer = 'Sorry, something went wrong.';
  } finally {
    clearTimeout(timer);
  }
  deps.count('commands', outcome);
  sendJson(res, 200, { response_type: 'ephemeral', text: answer });
};
