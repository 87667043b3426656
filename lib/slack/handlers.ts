import type { EventPayload, HandlerContext } from './context';

export type { HandlerContext } from './context';

type Fields = Readonly<Record<string, unknown>>;

/** A slash command as Slack posts it (the fields features use). */
export interface SlashCommand {
  command: string;
  text: string;
  userId: string;
  channelId: string;
  teamId: string;
  responseUrl: string;
  /** Opens a modal (`views.open`) within 3 s of the command. */
  triggerId: string;
}

/** A command's answer: a text, or a message with Block Kit, `ephemeral` (the default) or `in_channel`. */
export type CommandAnswer =
  | string
  | { text?: string; blocks?: readonly unknown[]; response_type?: 'ephemeral' | 'in_channel' };

export interface Subcommand {
  /** One line for `/coffee help`. */
  description: string;
  /**
   * The answer in place, Slack's acknowledgement: it must come within 2.5 s (the context's signal
   * fires then). Without it the acknowledgement is empty.
   */
  run?(
    args: string,
    command: SlashCommand,
    context: HandlerContext,
  ): CommandAnswer | undefined | Promise<CommandAnswer | undefined>;
  /**
   * Work after the acknowledgement, run once: by the worker with K_SINK, else in this process.
   * Answers through `context.respond()` (the command's response_url) or `context.say()`.
   */
  later?(args: string, command: SlashCommand, context: HandlerContext): void | Promise<void>;
}

/** Runs after Slack's acknowledgement with the inner event and its delivery's context. */
export type EventHandler<E = Record<string, unknown>> = (
  event: E,
  context: HandlerContext,
) => void | Promise<void>;

/** An interaction's payload as Slack sent it: its `type` checked, the rest plain fields. */
export type InteractionPayload = Fields & { readonly type: string };
/** One element of a `block_actions` payload's `actions`. */
export type SlackAction = Fields & { readonly action_id: string; readonly block_id?: string };

/** Runs after the acknowledgement with the interaction's payload and its context. */
export type InteractionHandler = (
  payload: InteractionPayload,
  context: HandlerContext,
) => void | Promise<void>;
/** Runs after the acknowledgement for one action of a `block_actions` payload. */
export type ActionHandler = (
  action: SlackAction,
  payload: InteractionPayload,
  context: HandlerContext,
) => void | Promise<void>;

/** A `view_submission`'s answer in place (Slack's `response_action`). */
export type ViewResponse =
  | { response_action: 'errors'; errors: Readonly<Record<string, string>> }
  | { response_action: 'update' | 'push'; view: Fields }
  | { response_action: 'clear' };

export interface ViewSubmission {
  /**
   * The answer in place within 2.5 s: a `response_action`, or nothing (the modal closes). With
   * `errors` the submission is refused: `later` does not run.
   */
  answer?(
    payload: InteractionPayload,
    context: HandlerContext,
  ): ViewResponse | undefined | Promise<ViewResponse | undefined>;
  /** Work after the acknowledgement, run once. */
  later?: InteractionHandler;
}

/** A `block_suggestion`'s answer in place: the options of an external select. */
export type OptionsAnswer = { options: readonly unknown[] } | { option_groups: readonly unknown[] };
export type OptionsHandler = (
  payload: InteractionPayload,
  context: HandlerContext,
) => OptionsAnswer | Promise<OptionsAnswer>;

/** A handler as the runtime calls it: the delivery's payload and context. */
export type Handler = (payload: Record<string, unknown>, context: HandlerContext) => unknown;

/** What one delivery comes to: its answer in place, if any, and the work after the ack. */
export interface Plan<Answer> {
  /** Runs before the acknowledgement; what it gives is the body of Slack's answer. */
  answer?: (context: HandlerContext) => Promise<Answer | undefined>;
  /** Runs after the acknowledgement (by the worker with K_SINK). */
  later: readonly Handler[];
}

/**
 * One CoffeeBuddy feature: registers its subcommands and handlers on the app's SlackHandlers.
 * Each lives in a file of its own under functions/features/ and imports only from lib/.
 */
export type Feature = (handlers: SlackHandlers) => void;

const SUBCOMMAND_NAME = /^[a-z][a-z0-9-]*$/;
const HELP = 'help';
/** Slack's action and callback ids are at most 255 characters. */
const MAX_ID_LENGTH = 255;

const text = (value: unknown): string => (typeof value === 'string' ? value : '');
const field = (value: unknown, name: string): unknown =>
  value !== null && typeof value === 'object' ? (value as Fields)[name] : undefined;

/** A slash command's form fields as features read them. */
export function slashCommandOf(form: Fields): SlashCommand {
  return {
    command: text(form.command),
    text: text(form.text),
    userId: text(form.user_id),
    channelId: text(form.channel_id),
    teamId: text(form.team_id),
    responseUrl: text(form.response_url),
    triggerId: text(form.trigger_id),
  };
}

function checkId(what: string, id: string): void {
  if (id === '' || id.length > MAX_ID_LENGTH) {
    throw new Error(`${what} must be 1 to ${MAX_ID_LENGTH} characters`);
  }
}

function add<T>(map: Map<string, T[]>, key: string, value: T): void {
  map.set(key, [...(map.get(key) ?? []), value]);
}

/**
 * What CoffeeBuddy does with Slack's requests: subcommands of one slash command, handlers for
 * event types, and interactions routed as Slack means them (actions by `action_id`, shortcuts and
 * views by `callback_id`). Features add a handler here, never a route.
 */
export class SlackHandlers {
  private readonly subcommands = new Map<string, Subcommand>();
  /** The help text, built once the subcommands are known (a new one forgets it). */
  private help: string | undefined;
  private readonly eventHandlers = new Map<string, EventHandler[]>();
  private readonly actions = new Map<string, ActionHandler[]>();
  private readonly options = new Map<string, OptionsHandler>();
  private readonly shortcuts = new Map<string, InteractionHandler[]>();
  private readonly submissions = new Map<string, ViewSubmission>();
  private readonly closings = new Map<string, InteractionHandler[]>();

  constructor(readonly command = '/coffee') {
    // Listed like any other; answered by planCommand without running anything.
    this.subcommands.set(HELP, { description: 'list what CoffeeBuddy can do' });
  }

  addSubcommand(name: string, subcommand: Subcommand): this {
    if (!SUBCOMMAND_NAME.test(name)) throw new Error(`invalid subcommand name "${name}"`);
    if (this.subcommands.has(name)) throw new Error(`subcommand "${name}" is already registered`);
    this.subcommands.set(name, subcommand);
    this.help = undefined;
    return this;
  }

  /**
   * Runs `handler` for each event of `type`, typed from `@slack/types` where it describes the
   * type (`onEvent('app_mention', (event: AppMentionEvent, context) => …)`). The payload is what
   * Slack sent, as Slack documents it; the runtime checks only its type.
   */
  onEvent<T extends string>(type: T, handler: EventHandler<EventPayload<T>>): this {
    add(this.eventHandlers, type, handler as unknown as EventHandler);
    return this;
  }

  /** A `block_actions` action with this `action_id` (a button, a select): after the ack. */
  onAction(actionId: string, handler: ActionHandler): this {
    checkId('an action_id', actionId);
    add(this.actions, actionId, handler);
    return this;
  }

  /** The options of the external select with this `action_id` (`block_suggestion`), in place. */
  onOptions(actionId: string, handler: OptionsHandler): this {
    checkId('an action_id', actionId);
    if (this.options.has(actionId)) throw new Error(`options for "${actionId}" already registered`);
    this.options.set(actionId, handler);
    return this;
  }

  /** A global shortcut (`shortcut`) or message shortcut (`message_action`): after the ack. */
  onShortcut(callbackId: string, handler: InteractionHandler): this {
    checkId('a callback_id', callbackId);
    add(this.shortcuts, callbackId, handler);
    return this;
  }

  /** A modal's submission (`view_submission`): an answer in place and work after the ack. */
  onViewSubmission(callbackId: string, submission: ViewSubmission): this {
    checkId('a callback_id', callbackId);
    if (this.submissions.has(callbackId)) {
      throw new Error(`view "${callbackId}" already registered`);
    }
    this.submissions.set(callbackId, submission);
    return this;
  }

  /** A modal closed (`view_closed`, when the view has `notify_on_close`): after the ack. */
  onViewClosed(callbackId: string, handler: InteractionHandler): this {
    checkId('a callback_id', callbackId);
    add(this.closings, callbackId, handler);
    return this;
  }

  /**
   * The answer to a command known without running anything, from its command and text alone:
   * help, an unknown command or subcommand; undefined for a registered subcommand.
   */
  fixedAnswer(command: string, commandText: string): string | undefined {
    const resolved = this.resolve(command, commandText);
    return typeof resolved === 'string' ? resolved : undefined;
  }

  /** `/coffee <name> <args>`: its answer in place and its work after the ack. */
  planCommand(command: SlashCommand): Plan<CommandAnswer> {
    const resolved = this.resolve(command.command, command.text);
    if (typeof resolved === 'string') return { answer: () => Promise.resolve(resolved), later: [] };
    const { subcommand, args } = resolved;
    return {
      ...(subcommand.run === undefined
        ? {}
        : { answer: async (context) => subcommand.run?.(args, command, context) }),
      later:
        subcommand.later === undefined
          ? []
          : [(_payload, context) => subcommand.later?.(args, command, context)],
    };
  }

  /** The subcommand a command names, with its arguments; or the answer when it names none. */
  private resolve(
    command: string,
    commandText: string,
  ): string | { subcommand: Subcommand; args: string } {
    if (command !== this.command) {
      return `CoffeeBuddy does not know ${command}. Try ${this.command} help.`;
    }
    // Stryker disable next-line Regex: /\s/ splits the same words, the empty ones filtered out
    const [name = HELP, ...rest] = commandText.split(/\s+/).filter(Boolean);
    const key = name.toLowerCase();
    if (key === HELP) return this.helpText();
    const subcommand = this.subcommands.get(key);
    if (subcommand === undefined) return `Unknown command "${name}". Try ${this.command} help.`;
    return { subcommand, args: rest.join(' ') };
  }

  handlersForEvent(type: string): readonly EventHandler[] {
    return this.eventHandlers.get(type) ?? [];
  }

  /**
   * What an interaction comes to, routed by its type and then its `action_id` or `callback_id`;
   * undefined when nothing here handles it.
   */
  planInteraction(payload: InteractionPayload): Plan<Fields> | undefined {
    switch (payload.type) {
      case 'block_actions':
        return this.planActions(payload);
      case 'block_suggestion': {
        const handler = this.options.get(text(payload.action_id));
        return handler === undefined
          ? undefined
          : { answer: async (context) => handler(payload, context), later: [] };
      }
      case 'shortcut':
      case 'message_action':
        return afterAck(this.shortcuts.get(text(payload.callback_id)), payload);
      case 'view_submission': {
        const submission = this.submissions.get(text(field(payload.view, 'callback_id')));
        if (submission === undefined) return undefined;
        const { later } = submission;
        return {
          // Without an answer of its own, nothing: the modal closes.
          answer: async (context) => submission.answer?.(payload, context),
          later: later === undefined ? [] : [(_payload, context) => later(payload, context)],
        };
      }
      case 'view_closed':
        return afterAck(this.closings.get(text(field(payload.view, 'callback_id'))), payload);
      default:
        return undefined;
    }
  }

  /** Every subcommand with its line, as `/coffee help` answers. */
  helpText(): string {
    this.help ??= this.buildHelp();
    return this.help;
  }

  private buildHelp(): string {
    const lines = [...this.subcommands.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, { description }]) => `• \`${this.command} ${name}\`: ${description}`);
    return ['CoffeeBuddy can do this:', ...lines].join('\n');
  }

  /** Each action of the payload to the handlers of its `action_id`; undefined when none has any. */
  private planActions(payload: InteractionPayload): Plan<Fields> | undefined {
    // Stryker disable next-line ArrayDeclaration: an element that is not an action has no action_id
    const actions = Array.isArray(payload.actions) ? (payload.actions as unknown[]) : [];
    const later: Handler[] = [];
    for (const action of actions) {
      const handlers = this.actions.get(text(field(action, 'action_id'))) ?? [];
      for (const handler of handlers) {
        later.push((_payload, context) => handler(action as SlackAction, payload, context));
      }
    }
    return later.length === 0 ? undefined : { later };
  }
}

function afterAck(
  handlers: readonly InteractionHandler[] | undefined,
  payload: InteractionPayload,
): Plan<Fields> | undefined {
  if (handlers === undefined) return undefined;
  return { later: handlers.map((handler) => (_payload, context) => handler(payload, context)) };
}
