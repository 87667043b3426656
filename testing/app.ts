import type http from 'node:http';
import { createApp, type App, type CreateAppOptions } from '../functions/app';
import { createServer, type CoffeebuddyServer } from '../functions/server';
import { loadSettings } from '../lib/config/settings';
import { createLogger } from '../lib/logger';
import { Redactor } from '../lib/redactor';
import { FakeClient } from './fakes';
import { listenOnLoopback } from './server';

export interface AppHarness {
  app: App;
  /** The production pipeline (createServer) listening on 127.0.0.1, for supertest. */
  server: http.Server;
  /** Its drain; `exits` records the codes it would have exited with. */
  shutdown: CoffeebuddyServer['shutdown'];
  exits: number[];
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
 * through createServer, the image's own pipeline. Every server and app built is closed after each
 * test.
 */
export function appHarness(
  defaults: HarnessOptions = {},
): (options?: HarnessOptions) => Promise<AppHarness> {
  const opened: { app: App; server: http.Server }[] = [];
  afterEach(async () => {
    await Promise.all(
      opened.splice(0).map(async ({ app, server }) => {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
        await app.close();
      }),
    );
  });
  return async (options = {}) => {
    const { env, fn, ...appOptions } = { ...defaults, ...options };
    const vault = new FakeClient();
    const ory = new FakeClient();
    const logs: Record<string, unknown>[] = [];
    // The app's own redactor, as production's logger has it: no secret reaches `logs` either.
    const redactor = appOptions.redactor ?? new Redactor();
    const app = createApp({
      settings: loadSettings({ ...defaults.env, ...env }),
      vaultClientFactory: () => vault,
      oryClientFactory: () => ory,
      redactor,
      logger: createLogger(
        'debug',
        (line) => logs.push(JSON.parse(line) as Record<string, unknown>),
        redactor,
      ),
      ...appOptions,
    });
    const exits: number[] = [];
    const { server, shutdown } = createServer(app, {
      target: fn,
      exit: (code) => exits.push(code),
    });
    opened.push({ app, server });
    await listenOnLoopback(server);
    return { app, server, shutdown, exits, vault, ory, logs };
  };
}
