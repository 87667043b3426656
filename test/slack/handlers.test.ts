import { SlackHandlers, type SlashCommand } from '../../lib/slack/handlers';

const slash = (text: string, command = '/coffee'): SlashCommand => ({
  command,
  text,
  userId: 'U1',
  channelId: 'C1',
  teamId: 'T1',
  responseUrl: 'https://hooks.slack.com/commands/x',
});

describe('SlackHandlers', () => {
  it('lists every subcommand for help and for an empty command', async () => {
    const registry = new SlackHandlers().addSubcommand('order', {
      description: 'order a coffee',
      run: () => 'ordered',
    });
    for (const text of ['help', '', '  HELP  ']) {
      const answer = await registry.runCommand(slash(text));
      expect(answer).toContain('`/coffee help`: list what CoffeeBuddy can do');
      expect(answer).toContain('`/coffee order`: order a coffee');
    }
  });

  it('runs a subcommand with its arguments', async () => {
    const registry = new SlackHandlers().addSubcommand('order', {
      description: 'x',
      run: (args, c) => `${c.userId} wants ${args}`,
    });
    expect(await registry.runCommand(slash('order  flat white'))).toBe('U1 wants flat white');
  });

  it('answers unknown subcommands and other slash commands helpfully', async () => {
    const registry = new SlackHandlers();
    expect(await registry.runCommand(slash('brew'))).toBe(
      'Unknown command "brew". Try /coffee help.',
    );
    expect(await registry.runCommand(slash('', '/tea'))).toBe(
      'CoffeeBuddy does not know /tea. Try /coffee help.',
    );
  });

  it('refuses duplicate or malformed subcommand names', () => {
    const registry = new SlackHandlers();
    expect(() => registry.addSubcommand('help', { description: '', run: () => '' })).toThrow(
      'already registered',
    );
    expect(() => registry.addSubcommand('Bad Name', { description: '', run: () => '' })).toThrow(
      'invalid',
    );
  });

  it('keeps every handler for an event or interaction type', () => {
    const a = jest.fn();
    const b = jest.fn();
    const registry = new SlackHandlers()
      .onEvent('app_mention', a)
      .onEvent('app_mention', b)
      .onInteraction('block_actions', a);
    expect(registry.handlersForEvent('app_mention')).toEqual([a, b]);
    expect(registry.handlersForEvent('message')).toEqual([]);
    expect(registry.handlersForInteraction('block_actions')).toEqual([a]);
  });
});
