// A peer for `npm run bench`: the same signed `/coffee help` answered by an app written with Bolt
// for JavaScript (@slack/bolt, a dev dependency of the bench only), through its HTTPReceiver.
// Loopback only: it listens on 127.0.0.1, and its Web API client points at a closed port there.
const { App, HTTPReceiver, LogLevel } = require('@slack/bolt');

const { PORT, SLACK_SIGNING_SECRET, HELP_TEXT } = process.env;
if (!PORT || !SLACK_SIGNING_SECRET || !HELP_TEXT) {
  throw new Error('bolt peer: PORT, SLACK_SIGNING_SECRET and HELP_TEXT are required');
}

const app = new App({
  receiver: new HTTPReceiver({
    signingSecret: SLACK_SIGNING_SECRET,
    endpoints: '/slack/commands',
  }),
  // A single-workspace app with a known token and bot, as one is usually run: with the bot's ids
  // given, Bolt never calls auth.test (which would leave the machine).
  token: 'xoxb-bench-peer',
  botId: 'B0BENCH01',
  botUserId: 'U0BENCHBOT',
  tokenVerificationEnabled: false,
  clientOptions: { slackApiUrl: 'http://127.0.0.1:1/api/' },
  logLevel: LogLevel.WARN,
});

app.command('/coffee', async ({ ack }) => {
  await ack({ response_type: 'ephemeral', text: HELP_TEXT });
});

app.start({ port: Number(PORT), host: '127.0.0.1' }).catch((error) => {
  console.error(error);
  process.exit(1);
});
