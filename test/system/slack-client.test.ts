import path from 'node:path';
import { signSlackRequest } from '../../lib/slack/signature';
import { metricValue } from '../../testing/metrics-text';
import {
  REPO_ROOT,
  requireBuild,
  startCoffeebuddy,
  type RunningProcess,
} from '../../testing/process';
import {
  startOryStandIn,
  startVaultStandIn,
  type OryStandIn,
  type VaultStandIn,
} from '../../testing/standins';
import { eventually } from '../../testing/tools';

/**
 * The production entry with a bot token configured: Slack's WebClient (dist/slack-web-api.cjs) is
 * not loaded by start-up or by serving Slack's requests, only by a Web API call; the call
 * metrics are on /metrics from the start.
 */

const SECRET = 'slack-client-system-secret';
const PRELOAD = path.join(REPO_ROOT, 'test', 'support', 'required-modules.js');
const CHUNK = './slack-web-api.cjs';

/** The modules the process has required so far, from the preloaded probe. */
async function requiredBy(server: RunningProcess): Promise<string[]> {
  const before = server.output().split('REQUIRED ').length;
  server.child.kill('SIGUSR2');
  await eventually(() => server.output().split('REQUIRED ').length > before);
  const line = server.output().split('REQUIRED ').at(-1)!.split('\n')[0]!;
  return JSON.parse(line) as string[];
}

function signedPost(server: RunningProcess, route: string, type: string, body: string) {
  const timestamp = String(Math.floor(Date.now() / 1000));
  return fetch(`${server.url}${route}`, {
    method: 'POST',
    headers: {
      'Content-Type': type,
      'X-Slack-Request-Timestamp': timestamp,
      'X-Slack-Signature': signSlackRequest(SECRET, timestamp, body),
    },
    body,
  });
}

describe('the entry with a Slack bot token', () => {
  let vault: VaultStandIn;
  let ory: OryStandIn;
  let server: RunningProcess | undefined;

  beforeAll(async () => {
    requireBuild();
    vault = await startVaultStandIn();
    ory = await startOryStandIn();
    vault.tokens.set('hvs.slack-client', Date.now() + 600_000);
    vault.secrets['coffeebuddy/slack'] = { signing_secret: SECRET, bot_token: 'xoxb-system' };
  });
  afterAll(async () => {
    await server?.stop();
    await Promise.all([vault.close(), ory.close()]);
  });

  it('does not load the WebClient chunk at start or for Slack’s requests, and exports the call metrics', async () => {
    server = await startCoffeebuddy(
      vault.url,
      ory.url,
      {
        VAULT_TOKEN: 'hvs.slack-client',
        SLACK_SIGNING_SECRET_VAULT_PATH: 'coffeebuddy/slack',
        SLACK_BOT_TOKEN_VAULT_PATH: 'coffeebuddy/slack',
      },
      ['-r', PRELOAD],
    );
    const command = new URLSearchParams({ command: '/coffee', text: 'help' }).toString();
    const answered = await signedPost(
      server,
      '/slack/commands',
      'application/x-www-form-urlencoded',
      command,
    );
    expect(answered.status).toBe(200);
    const event = JSON.stringify({
      type: 'event_callback',
      team_id: 'T1',
      event_id: 'EvClient',
      event: { type: 'reaction_added' },
    });
    expect((await signedPost(server, '/slack/events', 'application/json', event)).status).toBe(200);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(
      metricValue(metrics, 'coffeebuddy_slack_api_calls_total', {
        method: 'chat.postMessage',
        outcome: 'rate_limited',
      }),
    ).toBe(0);
    expect(await requiredBy(server)).not.toContain(CHUNK);
  });
});
