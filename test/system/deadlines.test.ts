import request from 'supertest';
import { SlackHandlers } from '../../lib/slack/handlers';
import { signSlackRequest } from '../../lib/slack/signature';
import { appHarness } from '../../testing/app';
import { SYSTEM_TOLERANCE_MS } from './tolerance';

const SECRET = 'deadline-secret';
/** How long the app lets a slash command run (functions/app.ts) before it answers for it. */
const COMMAND_TIMEOUT_MS = 2500;
const build = appHarness({ env: { SLACK_SIGNING_SECRET: SECRET } });

describe('deadlines', () => {
  it('answers a slash command within Slack’s 3 seconds when the subcommand never finishes', async () => {
    const handlers = new SlackHandlers().addSubcommand('stuck', {
      description: 'never answers',
      run: () => new Promise<string>(() => undefined),
    });
    const { server } = await build({ slackHandlers: handlers });
    const body = new URLSearchParams({ command: '/coffee', text: 'stuck' }).toString();
    const timestamp = String(Math.floor(Date.now() / 1000));
    const started = performance.now();
    const res = await request(server)
      .post('/slack/commands')
      .type('form')
      .set('X-Slack-Request-Timestamp', timestamp)
      .set('X-Slack-Signature', signSlackRequest(SECRET, timestamp, body))
      .send(body)
      .expect(200);
    const elapsed = performance.now() - started;
    expect(res.body.text).toContain('longer than Slack waits');
    expect(elapsed).toBeGreaterThanOrEqual(COMMAND_TIMEOUT_MS - 10);
    expect(elapsed).toBeLessThan(COMMAND_TIMEOUT_MS + SYSTEM_TOLERANCE_MS);
  });
});
