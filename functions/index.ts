import * as functionsFramework from '@google-cloud/functions-framework';
import { FUNCTION_TARGETS, type FunctionTarget } from '../lib/config/settings';
import { startApp } from './app';

/**
 * The function functions-framework was asked to serve, read as it reads it: `--target=<name>` or
 * `--target <name>`, else FUNCTION_TARGET (which the settings read). Known before the app is
 * built, since the worker and dead-letter functions are apps of their own.
 */
function requestedTarget(argv: readonly string[]): FunctionTarget | undefined {
  let name: string | undefined;
  argv.forEach((arg, index) => {
    if (arg.startsWith('--target=')) name = arg.slice('--target='.length);
    else if (arg === '--target') name = argv[index + 1];
  });
  return FUNCTION_TARGETS.find((target) => target === name);
}

/** The process's app; its functions are registered with functions-framework by name. */
const target = requestedTarget(process.argv);
export const app = startApp(target === undefined ? {} : { target });
for (const [name, handler] of Object.entries(app.functions)) {
  functionsFramework.http(name, handler);
}
