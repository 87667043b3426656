import * as functionsFramework from '@google-cloud/functions-framework';
import { SettingsError } from '../lib/config/settings';
import { createApp, type App } from './app';

/** Exit status for bad configuration (sysexits EX_CONFIG). */
const EXIT_CONFIG = 78;

function startApp(): App {
  try {
    return createApp();
  } catch (error) {
    if (!(error instanceof SettingsError)) throw error;
    // The framework would print a stack trace; a person needs only the list of bad settings.
    process.stderr.write(`coffeebuddy: ${error.message}\n`);
    process.exit(EXIT_CONFIG);
  }
}

/** The process's app; its functions are registered with functions-framework by name. */
export const app = startApp();
for (const [name, handler] of Object.entries(app.functions)) {
  functionsFramework.http(name, handler);
}
