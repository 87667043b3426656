import type { HandlerContext } from '../../lib/slack/context';
import {
  SlackHandlers,
  slashCommandOf,
  type InteractionPayload,
  type Plan,
  type SlashCommand,
} from '../../lib/slack/handlers';

const slash = (text: string, command = '/coffee'): SlashCommand => ({
  command,
  text,
  userId: 'U1',
  channelId: 'C1',
  teamId: 'T1',
  responseUrl: 'https://hooks.slack.com/commands/x',
  triggerId: '1.2.abc',
});

/** A context whose only use here is to be passed through: the handlers under test name it. */
const context = { eventId: 'ctx' } as HandlerContext;

/** A plan's answer in place: what running it gives. */
const answerOf = async <A>(plan: Plan<A> | undefined) => plan?.answer?.(context);
const runLater = async (plan: Plan<unknown> | undefined) => {
  for (const handler of plan?.later ?? []) await handler({}, context);
};

describe('SlackHandlers: commands', () => {
  it('lists every subcommand for help and for an empty command', async () => {
    const registry = new SlackHandlers().addSubcommand('order', {
      description: 'order a coffee',
      run: () => 'ordered',
    });
    for (const text of ['help', '', '  HELP  ']) {
      const answer = await answerOf(registry.planCommand(slash(text)));
      expect(answer).toContain('`/coffee help`: list what CoffeeBuddy can do');
      expect(answer).toContain('`/coffee order`: order a coffee');
      expect(answer).toBe(registry.helpText());
    }
    // Known without running anything; built again once a subcommand is added.
    expect(registry.fixedAnswer('/coffee', ' Help ')).toBe(registry.helpText());
    expect(registry.planCommand(slash('help')).later).toEqual([]);
    registry.addSubcommand('brew', { description: 'brew a pot' });
    expect(await answerOf(registry.planCommand(slash('help')))).toContain('`/coffee brew`');
    expect(registry.fixedAnswer('/coffee', '')).toContain('`/coffee brew`');
  });

  it('runs a subcommand with its arguments, the command and the context', async () => {
    const registry = new SlackHandlers().addSubcommand('order', {
      description: 'x',
      run: (args, c, ctx) => `${c.userId} wants ${args} (${ctx.eventId})`,
    });
    expect(await answerOf(registry.planCommand(slash('order  flat white')))).toBe(
      'U1 wants flat white (ctx)',
    );
    expect(registry.planCommand(slash('order')).later).toEqual([]);
  });

  it('a subcommand with work after the ack: later gets the same arguments and command', async () => {
    const seen: string[] = [];
    const registry = new SlackHandlers().addSubcommand('brew', {
      description: 'x',
      later: (args, c, ctx) => {
        seen.push(`${args}|${c.triggerId}|${ctx.eventId}`);
      },
    });
    const plan = registry.planCommand(slash('brew a pot'));
    expect(plan.answer).toBeUndefined();
    expect(plan.later).toHaveLength(1);
    await runLater(plan);
    expect(seen).toEqual(['a pot|1.2.abc|ctx']);
  });

  it('answers unknown subcommands and other slash commands helpfully, with nothing after', async () => {
    const registry = new SlackHandlers();
    const unknown = registry.planCommand(slash('brew'));
    expect(await answerOf(unknown)).toBe('Unknown command "brew". Try /coffee help.');
    expect(unknown.later).toEqual([]);
    expect(await answerOf(registry.planCommand(slash('', '/tea')))).toBe(
      'CoffeeBuddy does not know /tea. Try /coffee help.',
    );
    // The same answers from the command and its text alone; none for a registered subcommand.
    expect(registry.fixedAnswer('/coffee', 'Brew  now')).toBe(
      'Unknown command "Brew". Try /coffee help.',
    );
    expect(registry.fixedAnswer('/tea', 'help')).toBe(
      'CoffeeBuddy does not know /tea. Try /coffee help.',
    );
    registry.addSubcommand('brew', { description: 'x', run: () => 'brewing' });
    expect(registry.fixedAnswer('/coffee', 'BREW now')).toBeUndefined();
  });

  it('refuses duplicate or malformed subcommand names', () => {
    const registry = new SlackHandlers();
    expect(() => registry.addSubcommand('help', { description: '', run: () => '' })).toThrow(
      'already registered',
    );
    for (const name of ['Bad', 'tea time', 'tea_time', '1st']) {
      expect(() => registry.addSubcommand(name, { description: '', run: () => '' })).toThrow(
        `invalid subcommand name "${name}"`,
      );
    }
  });

  it('reads a command form as features read it; fields Slack left out are empty', () => {
    expect(
      slashCommandOf({
        command: '/coffee',
        text: 'status',
        user_id: 'U9',
        channel_id: 'C9',
        team_id: 'T9',
        response_url: 'https://hooks.slack.com/commands/1',
        trigger_id: '9.9',
        user_name: 'ignored',
      }),
    ).toEqual({
      command: '/coffee',
      text: 'status',
      userId: 'U9',
      channelId: 'C9',
      teamId: 'T9',
      responseUrl: 'https://hooks.slack.com/commands/1',
      triggerId: '9.9',
    });
    expect(slashCommandOf({ command: 7 }).command).toBe('');
  });
});

describe('SlackHandlers: events', () => {
  it('keeps every handler for an event type, in order', () => {
    const a = jest.fn();
    const b = jest.fn();
    const registry = new SlackHandlers().onEvent('app_mention', a).onEvent('app_mention', b);
    expect(registry.handlersForEvent('app_mention')).toEqual([a, b]);
    expect(registry.handlersForEvent('message')).toEqual([]);
  });
});

describe('SlackHandlers: interactions routed as Slack means them', () => {
  const seen: string[] = [];
  const record =
    (name: string) =>
    (...args: unknown[]) => {
      const [first, second] = args as [Record<string, string>, Record<string, string>];
      seen.push(`${name}:${first.action_id ?? first.type}:${second.type ?? ''}`);
    };
  beforeEach(() => {
    seen.length = 0;
  });

  const registry = new SlackHandlers()
    .onAction('approve', record('approve'))
    .onAction('approve', record('approve-2'))
    .onAction('deny', record('deny'))
    .onShortcut('new_order', record('shortcut'))
    .onViewSubmission('order_form', {
      answer: (payload) =>
        (payload.view as { state?: string }).state === 'bad'
          ? { response_action: 'errors', errors: { size: 'Pick a size' } }
          : undefined,
      later: record('submitted'),
    })
    .onViewSubmission('answer_only', { answer: () => ({ response_action: 'clear' }) })
    .onViewClosed('order_form', record('closed'))
    .onOptions('sizes', () => ({ options: [{ text: { type: 'plain_text', text: 'S' } }] }));

  const payload = (fields: Record<string, unknown>) => fields as InteractionPayload;

  it('block_actions by action_id: each action to its handlers, block_id kept', async () => {
    const plan = registry.planInteraction(
      payload({
        type: 'block_actions',
        actions: [
          { action_id: 'approve', block_id: 'b1' },
          { action_id: 'nobody' },
          { action_id: 'deny', block_id: 'b2' },
        ],
      }),
    );
    expect(plan?.answer).toBeUndefined();
    await runLater(plan);
    expect(seen).toEqual([
      'approve:approve:block_actions',
      'approve-2:approve:block_actions',
      'deny:deny:block_actions',
    ]);
  });

  it('an action nobody handles, a payload without actions: nothing to do', () => {
    for (const actions of [[{ action_id: 'nobody' }], [], undefined, 'x', [null, 3]]) {
      expect(registry.planInteraction(payload({ type: 'block_actions', actions }))).toBeUndefined();
    }
  });

  it('shortcuts and message actions by callback_id', async () => {
    await runLater(
      registry.planInteraction(payload({ type: 'shortcut', callback_id: 'new_order' })),
    );
    await runLater(
      registry.planInteraction(payload({ type: 'message_action', callback_id: 'new_order' })),
    );
    expect(seen).toEqual(['shortcut:shortcut:', 'shortcut:message_action:']);
    expect(
      registry.planInteraction(payload({ type: 'shortcut', callback_id: 'other' })),
    ).toBeUndefined();
  });

  it('view_submission by the view’s callback_id: its answer in place, its work after', async () => {
    const submit = (state: string, callbackId = 'order_form') =>
      registry.planInteraction(
        payload({ type: 'view_submission', view: { callback_id: callbackId, state } }),
      );
    expect(await answerOf(submit('bad'))).toEqual({
      response_action: 'errors',
      errors: { size: 'Pick a size' },
    });
    const good = submit('good');
    expect(await answerOf(good)).toBeUndefined();
    await runLater(good);
    expect(seen).toEqual(['submitted:view_submission:']);
    const answerOnly = submit('x', 'answer_only');
    expect(await answerOf(answerOnly)).toEqual({ response_action: 'clear' });
    expect(answerOnly?.later).toEqual([]);
    expect(submit('x', 'unknown')).toBeUndefined();
  });

  it('view_closed by callback_id, after the ack', async () => {
    await runLater(
      registry.planInteraction(
        payload({ type: 'view_closed', view: { callback_id: 'order_form' } }),
      ),
    );
    expect(seen).toEqual(['closed:view_closed:']);
  });

  it('block_suggestion by action_id, answered in place with the options', async () => {
    const plan = registry.planInteraction(
      payload({ type: 'block_suggestion', action_id: 'sizes' }),
    );
    expect(await answerOf(plan)).toEqual({
      options: [{ text: { type: 'plain_text', text: 'S' } }],
    });
    expect(plan?.later).toEqual([]);
    expect(
      registry.planInteraction(payload({ type: 'block_suggestion', action_id: 'other' })),
    ).toBeUndefined();
  });

  it('a type Slack may add later is not handled', () => {
    expect(registry.planInteraction(payload({ type: 'workflow_step_edit' }))).toBeUndefined();
  });

  it('refuses ids Slack cannot send, and a second answer for the same view or select', () => {
    const fresh = new SlackHandlers();
    expect(() => fresh.onAction('', jest.fn())).toThrow('an action_id must be 1 to 255');
    expect(() => fresh.onShortcut('x'.repeat(256), jest.fn())).toThrow('a callback_id');
    expect(() => fresh.onOptions('', () => ({ options: [] }))).toThrow(
      'an action_id must be 1 to 255 characters',
    );
    expect(() => fresh.onViewSubmission('', {})).toThrow(
      'a callback_id must be 1 to 255 characters',
    );
    expect(() => fresh.onViewClosed('x'.repeat(256), jest.fn())).toThrow(
      'a callback_id must be 1 to 255 characters',
    );
    fresh.onAction('x'.repeat(255), jest.fn());
    fresh.onViewSubmission('v', {}).onOptions('o', () => ({ options: [] }));
    expect(() => fresh.onViewSubmission('v', {})).toThrow('view "v" already registered');
    expect(() => fresh.onOptions('o', () => ({ options: [] }))).toThrow('already registered');
  });
});

describe('SlackHandlers: the help text and odd payloads', () => {
  it('lists the subcommands in name order under one heading', () => {
    const registry = new SlackHandlers()
      .addSubcommand('order', { description: 'order one' })
      .addSubcommand('brew', { description: 'brew a pot' });
    expect(registry.helpText()).toBe(
      [
        'CoffeeBuddy can do this:',
        '• `/coffee brew`: brew a pot',
        '• `/coffee help`: list what CoffeeBuddy can do',
        '• `/coffee order`: order one',
      ].join('\n'),
    );
  });

  it('a modal payload without its view, or with another shape, is not handled', () => {
    const registry = new SlackHandlers()
      .onViewSubmission('order', { answer: () => ({ response_action: 'clear' }) })
      .onViewClosed('order', jest.fn());
    for (const view of [undefined, null, 'order', { callback_id: 7 }]) {
      for (const type of ['view_submission', 'view_closed']) {
        expect(registry.planInteraction({ type, view })).toBeUndefined();
      }
    }
  });
});
