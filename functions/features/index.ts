// The seat of CoffeeBuddy's features: every entry (the image, `--target`, the test harness)
// serves the handlers built here. A feature is one file beside this one, added to FEATURES.
import { SlackHandlers, type Feature } from '../../lib/slack/handlers';
import { mention } from './mention';
import { status } from './status';

/** Every feature, in the order it registers. */
export const FEATURES: readonly Feature[] = [mention, status];

/** CoffeeBuddy's SlackHandlers: `/coffee` with every feature's subcommands and handlers. */
export function coffeeBuddyHandlers(features: readonly Feature[] = FEATURES): SlackHandlers {
  const handlers = new SlackHandlers('/coffee');
  for (const feature of features) feature(handlers);
  return handlers;
}
