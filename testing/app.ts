import type http from 'node:http';
import { createApp, type App, type CreateAppOptions } from '../functions/app';
import { loadSettings } from '../lib/config/settings';
import { createLogger } from '../lib/logger';
import { FakeClient } from './fakes';
import { serveFunction } from './server';

export interface AppHarness {
  app: App;
  /** The function served as functions-framework serves it, for supertest. */
  server: http.Server;
  /** The fake Vault and Ory the app was given (unused when a client factory was passed). */
  vault: FakeClient;
  ory: FakeClient;
  /** Every log line, parsed. */
  logs: Record<string, unknown>[];
}

export interface HarnessOptions extends CreateAppOptions {
  /** Settings' environment, over the harness defaults; ignored when `settings` is given. */
  env?: NodeJS.ProcessEnv;
  /** The function to serve. */
  fn?: string;
}

/**
 * Builds apps in-process, the one way tests do: settings from `env`, a fake Vault and Ory unless
 * client factories are given, a registry of its own, a debug logger whose lines are kept, served
 * through functions-framework's test server. Every app built is closed after each test.
 */
export function appHarness(
  defaults: HarnessOptions = {},
): (options?: HarnessOptions) => AppHarness {
  const opened: App[] = [];
  afterEach(() => {
    for (const app of opened.splice(0)) app.close();
  });
  return (options = {}) => {
    const { env, fn = 'coffeebuddy', ...appOptions } = { ...defaults, ...options };
    const vault = new FakeClient();
    const ory = new FakeClient();
    const logs: Record<string, unknown>[] = [];
    const app = createApp({
      settings: loadSettings({ ...defaults.env, ...env }),
      vaultClientFactory: () => vault,
      oryClientFactory: () => ory,
      logger: createLogger('debug', (line) =>
        logs.push(JSON.parse(line) as Record<string, unknown>),
      ),
      ...appOptions,
    });
    opened.push(app);
    const handler = app.functions[fn];
    if (handler === undefined) throw new Error(`no function ${fn}`);
    return { app, server: serveFunction(handler), vault, ory, logs };
  };
}
