// The production process (serveProcess) with a Slack handler of the eventing tests' and the
// benchmark's own, run with tsx: an `app_mention` handler that, when WORK_RUNS_FILE is set,
// appends `start <text> <pid>` and `end <text> <pid>` to it around a wait of
// WORK_HANDLER_DELAY_MS, and throws before `end` when WORK_HANDLER_FAILS=always. Without them it
// does nothing (the benchmark's no-op handler).
import fs from 'node:fs';
import { serveProcess } from '../functions/process';
import { SlackHandlers } from '../lib/slack/handlers';

const runsFile = process.env.WORK_RUNS_FILE ?? '';
const delayMs = Number(process.env.WORK_HANDLER_DELAY_MS ?? '0');
const fails = process.env.WORK_HANDLER_FAILS === 'always';

const slackHandlers = new SlackHandlers().onEvent('app_mention', async (event) => {
  const mark = `${event.text} ${process.pid}`;
  if (runsFile !== '') fs.appendFileSync(runsFile, `start ${mark}\n`);
  if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
  if (fails) throw new Error('this handler always fails');
  if (runsFile !== '') fs.appendFileSync(runsFile, `end ${mark}\n`);
});

serveProcess({ slackHandlers });
