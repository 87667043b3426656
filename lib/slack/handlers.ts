import type { EventPayload, HandlerContext } from './context';

export type { HandlerContext } from './context';

/** A slash command as Slack posts it (the fields features use). */
export interface SlashCommand {
  command: string;
  text: string;
  userId: string;
  channelId: string;
  teamId: string;
  responseUrl: string;
}

export interface Subcommand {
  /** One line for `/coffee help`. */
  description: string;
  /** The ephemeral answer; must come well within Slack's 3 seconds. */
  run(args: string, command: SlashCommand): string | Promise<string>;
}

/** Runs after Slack's acknowledgement with the inner event and its delivery's context. */
export type EventHandler<E = Record<string, unknown>> = (
  event: E,
  context: HandlerContext,
) => void | Promise<void>;
/** Runs after Slack's acknowledgement with the interaction's payload and its context. */
export type InteractionHandler = (
  payload: Record<string, unknown>,
  context: HandlerContext,
) => void | Promise<void>;

/**
 * One CoffeeBuddy feature: registers its subcommands and handlers on the app's SlackHandlers.
 * Each lives in a file of its own under functions/features/ and imports only from lib/.
 */
export type Feature = (handlers: SlackHandlers) => void;

/**
 * What CoffeeBuddy does with Slack's requests: subcommands of one slash command, and handlers for
 * event and interaction types. Features add a handler here, never a route.
 */
export class SlackHandlers {
  private readonly subcommands = new Map<string, Subcommand>();
  private readonly eventHandlers = new Map<string, EventHandler[]>();
  private readonly interactionHandlers = new Map<string, InteractionHandler[]>();

  constructor(readonly command = '/coffee') {
    this.subcommands.set('help', {
      description: 'list what CoffeeBuddy can do',
      run: () => this.help(),
    });
  }

  addSubcommand(name: string, subcommand: Subcommand): this {
    if (!/^[a-z][a-z0-9-]*$/.test(name)) throw new Error(`invalid subcommand name "${name}"`);
    if (this.subcommands.has(name)) throw new Error(`subcommand "${name}" is already registered`);
    this.subcommands.set(name, subcommand);
    return this;
  }

  /**
   * Runs `handler` for each event of `type`, typed from `@slack/types` where it describes the
   * type (`onEvent('app_mention', (event: AppMentionEvent, context) => …)`). The payload is what
   * Slack sent, as Slack documents it; the runtime checks only its type.
   */
  onEvent<T extends string>(type: T, handler: EventHandler<EventPayload<T>>): this {
    const registered = handler as unknown as EventHandler;
    this.eventHandlers.set(type, [...(this.eventHandlers.get(type) ?? []), registered]);
    return this;
  }

  onInteraction(type: string, handler: InteractionHandler): this {
    this.interactionHandlers.set(type, [...(this.interactionHandlers.get(type) ?? []), handler]);
    return this;
  }

  /** The ephemeral answer to a slash command. */
  runCommand(command: SlashCommand): string | Promise<string> {
    if (command.command !== this.command) {
      return `CoffeeBuddy does not know ${command.command}. Try ${this.command} help.`;
    }
    const [name = 'help', ...rest] = command.text.trim().split(/\s+/).filter(Boolean);
    const subcommand = this.subcommands.get(name.toLowerCase());
    if (subcommand === undefined) {
      return `Unknown command "${name}". Try ${this.command} help.`;
    }
    return subcommand.run(rest.join(' '), command);
  }

  handlersForEvent(type: string): readonly EventHandler[] {
    return this.eventHandlers.get(type) ?? [];
  }

  handlersForInteraction(type: string): readonly InteractionHandler[] {
    return this.interactionHandlers.get(type) ?? [];
  }

  private help(): string {
    const lines = [...this.subcommands.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, { description }]) => `• \`${this.command} ${name}\`: ${description}`);
    return ['CoffeeBuddy can do this:', ...lines].join('\n');
  }
}
