import type { AppMentionEvent } from '@slack/types';
import type { HandlerContext } from '../../lib/slack/context';
import type { Feature } from '../../lib/slack/handlers';

/** The button under a mention's answer: a click is answered with the help text. */
export const HELP_ACTION_ID = 'coffeebuddy_help';
/** The metadata event type of CoffeeBuddy's answer to a mention: how a retry finds its own post. */
export const MENTION_REPLY_EVENT_TYPE = 'coffeebuddy_mention_reply';
/** Replies read back on a retry: an answer is posted at once, so it is among the first. */
const REPLIES_LOOKED_AT = 100;

interface Reply {
  metadata?: { event_type?: unknown; event_payload?: { event_id?: unknown } };
}

/**
 * Whether an earlier attempt already answered this mention: its post carries the event id in
 * its metadata. Asked only when the handler runs again (attempt > 1 or Slack's retry), so the
 * usual mention costs one call.
 */
async function answeredBefore(
  context: HandlerContext,
  channel: string,
  thread: string,
): Promise<boolean> {
  const found = await context.slack.call(
    'conversations.replies',
    { channel, ts: thread, limit: REPLIES_LOOKED_AT, include_all_metadata: true },
    { signal: context.signal },
  );
  const messages = Array.isArray(found.messages) ? (found.messages as Reply[]) : [];
  return messages.some(
    ({ metadata }) =>
      metadata?.event_type === MENTION_REPLY_EVENT_TYPE &&
      metadata.event_payload?.event_id === context.eventId,
  );
}

/**
 * A mention of CoffeeBuddy is answered in its thread (the mention's own thread, else a new one
 * under it) with a pointer to the slash command's help and a button that shows it; a click is
 * answered through its response_url, to the person who clicked.
 */
export const mention: Feature = (slack) => {
  slack.onAction(HELP_ACTION_ID, async (_action, _payload, context) => {
    await context.respond({
      response_type: 'ephemeral',
      replace_original: false,
      text: slack.helpText(),
    });
  });
  slack.onEvent('app_mention', async (event: AppMentionEvent, context) => {
    const thread = event.thread_ts ?? event.ts;
    const again = context.attempt > 1 || context.retryNum !== undefined;
    if (again && (await answeredBefore(context, event.channel, thread))) {
      context.logger.info('mention already answered');
      return;
    }
    const who = event.user === undefined ? '' : ` <@${event.user}>`;
    const text = `Hi${who}! I'm CoffeeBuddy. Try \`${slack.command} help\` to see what I can do.`;
    await context.say({
      text,
      blocks: [
        { type: 'section', text: { type: 'mrkdwn', text } },
        {
          type: 'actions',
          elements: [
            {
              type: 'button',
              action_id: HELP_ACTION_ID,
              text: { type: 'plain_text', text: 'What can you do?' },
            },
          ],
        },
      ],
      thread_ts: thread,
      metadata: {
        event_type: MENTION_REPLY_EVENT_TYPE,
        event_payload: { event_id: context.eventId },
      },
    });
  });
};
