import * as functionsFramework from '@google-cloud/functions-framework';
import { startApp } from './app';

/** The process's app; its functions are registered with functions-framework by name. */
export const app = startApp();
for (const [name, handler] of Object.entries(app.functions)) {
  functionsFramework.http(name, handler);
}
