import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { signSlackRequest } from '../../lib/slack/signature';
import { REPO_ROOT, startProcess, type RunningProcess } from '../../testing/process';

/**
 * "Adding a feature is the whole change": a copy of the sources with one more file in
 * functions/features/ and its name in the seat's FEATURES, built with the project's own bundle
 * script, serves the new subcommand from `node dist/main.cjs` (what `npm start` and the image run).
 */
const SECRET = 'features-system-secret';
const FORM = 'application/x-www-form-urlencoded';

const ORDER_FEATURE = `import type { Feature } from '../../lib/slack/handlers';

export const order: Feature = (slack) => {
  slack.addSubcommand('order', {
    description: 'order a coffee',
    run: (args, command) => \`Ordered \${args} for <@\${command.userId}>\`,
  });
};
`;

let copy = '';
let server: RunningProcess | undefined;

beforeAll(() => {
  copy = fs.mkdtempSync(path.join(os.tmpdir(), 'coffeebuddy-seat-'));
  for (const part of ['functions', 'lib', 'build', 'testing']) {
    fs.cpSync(path.join(REPO_ROOT, part), path.join(copy, part), { recursive: true });
  }
  for (const file of ['package.json', 'tsconfig.json']) {
    fs.copyFileSync(path.join(REPO_ROOT, file), path.join(copy, file));
  }
  fs.symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(copy, 'node_modules'), 'dir');
  // The whole change: a file, and its name in the seat.
  fs.writeFileSync(path.join(copy, 'functions', 'features', 'order.ts'), ORDER_FEATURE);
  const seat = path.join(copy, 'functions', 'features', 'index.ts');
  const before = fs.readFileSync(seat, 'utf8');
  const after = before
    .replace(
      "import { mention } from './mention';",
      "import { mention } from './mention';\nimport { order } from './order';",
    )
    .replace(/(FEATURES: readonly Feature\[\] = \[[^\]]*)\]/, '$1, order]');
  expect(after).toContain(', order];');
  fs.writeFileSync(seat, after);
  execFileSync(process.execPath, ['build/bundle.js'], {
    cwd: copy,
    stdio: 'pipe',
    timeout: 60_000,
  });
}, 90_000);

afterAll(async () => {
  await server?.stop();
  fs.rmSync(copy, { recursive: true, force: true });
});

async function command(text: string): Promise<{ status: number; text: string }> {
  const body = new URLSearchParams({
    command: '/coffee',
    text,
    user_id: 'U0042',
    team_id: 'T0001',
    channel_id: 'C0001',
  }).toString();
  const timestamp = String(Math.floor(Date.now() / 1000));
  const res = await fetch(`${server!.url}/slack/commands`, {
    method: 'POST',
    headers: {
      'Content-Type': FORM,
      'X-Slack-Request-Timestamp': timestamp,
      'X-Slack-Signature': signSlackRequest(SECRET, timestamp, body),
    },
    body,
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, text: ((await res.json()) as { text: string }).text };
}

describe('a feature added to the seat, as built', () => {
  it('is served by node dist/main.cjs: its subcommand answers and /coffee help lists it', async () => {
    server = await startProcess({
      args: ['dist/main.cjs'],
      cwd: copy,
      env: { NODE_ENV: 'test', LISTEN_HOST: '127.0.0.1', SLACK_SIGNING_SECRET: SECRET },
    });
    expect(await command('order flat white')).toEqual({
      status: 200,
      text: 'Ordered flat white for <@U0042>',
    });
    const help = await command('help');
    expect(help.text).toContain('`/coffee order`: order a coffee');
    expect(help.text).toContain('`/coffee help`');
  });
});
