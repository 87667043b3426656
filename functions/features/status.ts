import type { Feature } from '../../lib/slack/handlers';

/** Acknowledges `/coffee status` at once; the check runs after it, where the work runs. */
export const STATUS_ACK = 'Checking…';

/**
 * `/coffee status`: acknowledged at once, then answered through the command's response_url with
 * the readiness of the process that does the work (the worker, with K_SINK): each component's
 * name and state, never an error's text.
 */
export const status: Feature = (slack) => {
  slack.addSubcommand('status', {
    description: 'check whether CoffeeBuddy and what it depends on are ready',
    run: () => STATUS_ACK,
    later: async (_args, _command, context) => {
      const { ready, components } = await context.readiness();
      const lines = Object.entries(components)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([name, state]) => `• ${name}: ${state}`);
      const headline = ready ? 'CoffeeBuddy is ready.' : 'CoffeeBuddy is not ready.';
      await context.respond({ response_type: 'ephemeral', text: [headline, ...lines].join('\n') });
    },
  });
};
