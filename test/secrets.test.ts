import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import request from 'supertest';
import { createApp } from '../functions/app';
import { createLogger } from '../lib/logger';
import { SETTING_NAMES, SettingsError, loadSettings } from '../lib/config/settings';
import { signSlackRequest } from '../lib/slack/signature';
import { startSlackApiStandIn } from '../testing/slack-api';
import { serveFunction } from '../testing/server';
import { APP_PASSWORD, APP_ROLE, itWithPostgres, startPostgres } from '../testing/postgres';
import { absentUrl, startOryStandIn, startVaultStandIn } from '../testing/standins';
import { CANARIES, expectNoCanary } from './support/canaries';

/** An error's message and stack, as a log or a crash report would show them. */
async function failureText(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    return `${(error as Error).message}\n${String((error as Error).stack)}`;
  }
  throw new Error('expected a failure');
}

describe('secrets never leave', () => {
  it('no token or secret setting is echoed by a settings error, whatever else is wrong', () => {
    const secretNames = SETTING_NAMES.filter((n) => /TOKEN$|SECRET$|PASSWORD$/.test(n));
    expect(secretNames.sort()).toEqual([
      'PGPASSWORD',
      'SLACK_BOT_TOKEN',
      'SLACK_SIGNING_SECRET',
      'VAULT_TOKEN',
    ]);
    for (const name of secretNames) {
      // A canary no format accepts but free text, beside a bad value in every other setting.
      const canary = `canary ${name} ?#%/..\n`;
      const env: NodeJS.ProcessEnv = { NODE_ENV: 'production' };
      for (const other of SETTING_NAMES) if (other !== 'NODE_ENV') env[other] = '%bad value%';
      env[name] = canary;
      const error = (() => {
        try {
          loadSettings(env);
        } catch (e) {
          return e as SettingsError;
        }
        throw new Error('expected a SettingsError');
      })();
      expect(error.problems.length).toBeGreaterThan(10);
      expect(error.message).not.toContain(canary.trim());
      expect(String(error.stack)).not.toContain(canary.trim());
    }
  });

  it('not in settings errors', () => {
    const error = (() => {
      try {
        loadSettings({
          NODE_ENV: 'production',
          VAULT_TOKEN: CANARIES.VAULT_TOKEN,
          VAULT_TOKEN_FILE: 'relative/path',
          VAULT_K8S_ROLE: 'role',
          SLACK_SIGNING_SECRET: CANARIES.SLACK_SIGNING_SECRET,
          SLACK_SIGNING_SECRET_VAULT_PATH: 'coffeebuddy/slack',
          PGPASSWORD: CANARIES.PGPASSWORD,
          PG_PASSWORD_VAULT_PATH: 'coffeebuddy/postgres',
          SLACK_BOT_TOKEN: CANARIES.SLACK_BOT_TOKEN,
          SLACK_BOT_TOKEN_VAULT_PATH: 'coffeebuddy/slack',
        });
      } catch (e) {
        return e as SettingsError;
      }
      throw new Error('expected a SettingsError');
    })();
    expect(error.problems.length).toBeGreaterThanOrEqual(8);
    expectNoCanary('a settings error', error.message);
  });

  itWithPostgres(
    'not in the database client’s logs, errors, health or metrics',
    async () => {
      const cluster = await startPostgres();
      const vault = await startVaultStandIn();
      const lines: string[] = [];
      const outputs: string[] = [];
      try {
        vault.tokens.set(CANARIES.VAULT_TOKEN, Date.now() + 600_000);
        // The canaries are the role's passwords in turn: each was really sent, and refused or used.
        const configurations: [NodeJS.ProcessEnv, string][] = [
          [{ PGPASSWORD: CANARIES.PGPASSWORD }, CANARIES.PGPASSWORD],
          [
            {
              VAULT_ADDR: vault.url,
              VAULT_TOKEN: CANARIES.VAULT_TOKEN,
              PG_PASSWORD_VAULT_PATH: 'coffeebuddy/postgres',
            },
            CANARIES.vaultStoredPgPassword,
          ],
        ];
        vault.secrets['coffeebuddy/postgres'] = { password: CANARIES.vaultStoredPgPassword };
        for (const [env, password] of configurations) {
          const app = createApp({
            settings: loadSettings({
              ORY_URL: vault.url,
              VAULT_ADDR: vault.url,
              ...cluster.env({ PG_STATEMENT_TIMEOUT_MS: '300', ...env }),
            }),
            registry: new Registry(),
            logger: createLogger('debug', (line) => lines.push(line)),
            database: true,
          });
          const server = serveFunction(app.functions.coffeebuddy!);
          const db = app.postgres!;
          // Refused (the role has another password), then accepted, then cut by a timeout.
          outputs.push(await failureText(db.query('refused', 'SELECT 1')));
          outputs.push((await request(server).get('/health/ready')).text);
          await cluster.admin(`ALTER ROLE ${APP_ROLE} PASSWORD '${password}'`);
          await db.query('accepted', 'SELECT 1');
          outputs.push(await failureText(db.query('slow', 'SELECT pg_sleep(10)')));
          outputs.push((await request(server).get('/health/ready')).text);
          outputs.push((await request(server).get('/metrics')).text);
          await db.close();
          await app.close();
          await cluster.admin(`ALTER ROLE ${APP_ROLE} PASSWORD '${APP_PASSWORD}'`);
        }
        expect(lines.some((l) => l.includes('PostgreSQL refused the password'))).toBe(true);
        expectNoCanary('database errors, responses and metrics', outputs.join('\n'));
        expectNoCanary('database logs', lines.join('\n'));
      } finally {
        await Promise.all([cluster.remove(), vault.close()]);
      }
    },
    60_000,
  );

  it('not in responses, headers, logs or metrics, whatever requests come', async () => {
    const vault = await startVaultStandIn();
    const ory = await startOryStandIn();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'canary-'));
    const logs: string[] = [];
    try {
      vault.tokens.set(CANARIES.VAULT_TOKEN, Date.now() + 600_000);
      vault.secrets['coffeebuddy/slack'] = { signing_secret: CANARIES.vaultStoredSecret };
      // Kubernetes auth: the service-account token file holds the canary JWT.
      const jwtFile = path.join(dir, 'token');
      fs.writeFileSync(jwtFile, `${CANARIES.jwt}\n`);
      vault.kubernetes.role = 'coffeebuddy';
      vault.kubernetes.jwt = CANARIES.jwt;
      const vaultPath = { SLACK_SIGNING_SECRET_VAULT_PATH: 'coffeebuddy/slack' };
      const configurations: [NodeJS.ProcessEnv, string][] = [
        [{ VAULT_TOKEN: CANARIES.VAULT_TOKEN, ...vaultPath }, CANARIES.vaultStoredSecret],
        [{ SLACK_SIGNING_SECRET: CANARIES.SLACK_SIGNING_SECRET }, CANARIES.SLACK_SIGNING_SECRET],
        [
          { VAULT_K8S_ROLE: 'coffeebuddy', VAULT_K8S_JWT_FILE: jwtFile, ...vaultPath },
          CANARIES.vaultStoredSecret,
        ],
      ];
      const apps = configurations.map(([env, secret]) => ({
        secret,
        app: createApp({
          settings: loadSettings({ VAULT_ADDR: vault.url, ORY_URL: ory.url, ...env }),
          registry: new Registry(),
          logger: createLogger('debug', (line) => logs.push(line)),
        }),
      }));
      const outputs: string[] = [];
      for (const { app, secret } of apps) {
        const server = serveFunction(app.functions.coffeebuddy!);
        const body = new URLSearchParams({ command: '/coffee', text: 'help' }).toString();
        const ts = String(Math.floor(Date.now() / 1000));
        const signed = await request(server)
          .post('/slack/commands')
          .type('form')
          .set('X-Slack-Request-Timestamp', ts)
          .set('X-Slack-Signature', signSlackRequest(secret, ts, body))
          .send(body);
        // The secret really was used: each canary is planted where the app reads it.
        expect(signed.status).toBe(200);
        const answers = [
          signed,
          await request(server)
            .post('/slack/commands')
            .type('form')
            .set('X-Slack-Request-Timestamp', ts)
            .set('X-Slack-Signature', 'v0=00')
            .send(body),
          await request(server)
            .post('/slack/events')
            .type('json')
            .send('{"type":"url_verification","challenge":"x"}'),
          await request(server).get('/health/ready'),
          await request(server).get('/metrics'),
        ];
        // Vault down, then the secret gone: the failure paths too.
        vault.secrets['coffeebuddy/slack'] = {};
        answers.push(await request(server).get('/health/ready'));
        vault.state = 'sealed';
        answers.push(
          await request(server).get('/health/ready'),
          await request(server).get('/metrics'),
        );
        vault.state = 'active';
        vault.secrets['coffeebuddy/slack'] = { signing_secret: CANARIES.vaultStoredSecret };
        for (const answer of answers) outputs.push(JSON.stringify(answer.headers), answer.text);
        await app.close();
      }
      expect(vault.kubernetes.logins).toBeGreaterThan(0);
      expect(outputs.join('').length).toBeGreaterThan(1000);
      expectNoCanary('responses', outputs.join('\n'));
      expectNoCanary('logs', logs.join('\n'));
      expect(logs.length).toBeGreaterThan(0);
    } finally {
      await Promise.all([vault.close(), ory.close()]);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('not in the Slack client’s logs, errors or metrics, whatever Slack answers', async () => {
    const vault = await startVaultStandIn();
    const slack = await startSlackApiStandIn();
    const lines: string[] = [];
    const outputs: string[] = [];
    try {
      vault.tokens.set(CANARIES.VAULT_TOKEN, Date.now() + 600_000);
      const fromVault = {
        VAULT_TOKEN: CANARIES.VAULT_TOKEN,
        SLACK_BOT_TOKEN_VAULT_PATH: 'coffeebuddy/slack-bot',
      };
      const configurations: [NodeJS.ProcessEnv, string][] = [
        [{ SLACK_BOT_TOKEN: CANARIES.SLACK_BOT_TOKEN }, CANARIES.SLACK_BOT_TOKEN],
        [fromVault, CANARIES.vaultStoredBotToken],
      ];
      for (const [env, token] of configurations) {
        vault.secrets['coffeebuddy/slack-bot'] = { bot_token: token };
        slack.tokens.clear();
        slack.tokens.add(token);
        const registry = new Registry();
        const app = createApp({
          settings: loadSettings({
            VAULT_ADDR: vault.url,
            ORY_URL: vault.url,
            SLACK_API_URL: slack.url,
            ...env,
          }),
          registry,
          logger: createLogger('debug', (line) => lines.push(line)),
        });
        const bot = app.slack!;
        const post = () => bot.call('chat.postMessage', { channel: 'C1', text: 'x' });
        // What a caller sees of a call, settled either way.
        const seen = () =>
          post().then(
            JSON.stringify,
            (e: unknown) => `${String(e)}\n${String((e as Error).stack)}`,
          );
        await post();
        slack.rateLimit('chat.postMessage', 1, 7);
        outputs.push(await failureText(post()));
        slack.answer('chat.postMessage', {
          answer: { kind: 'status', status: 502, body: 'bad gateway' },
          times: 1,
        });
        outputs.push(await failureText(post()));
        // Refused: the token read again (Vault rotated it, or the setting is the same) and sent.
        vault.secrets['coffeebuddy/slack-bot'] = { bot_token: CANARIES.rotatedBotToken };
        slack.tokens.clear();
        slack.tokens.add(CANARIES.rotatedBotToken);
        outputs.push(await seen(), await seen());
        outputs.push(await registry.metrics());
        await app.close();
      }
      const sent = new Set(slack.calls.map((c) => c.token));
      // Each canary really was sent to Slack.
      expect(sent).toEqual(
        new Set([CANARIES.SLACK_BOT_TOKEN, CANARIES.vaultStoredBotToken, CANARIES.rotatedBotToken]),
      );
      const refusing = createApp({
        settings: loadSettings({
          VAULT_ADDR: vault.url,
          ORY_URL: vault.url,
          SLACK_API_URL: `${await absentUrl()}/api/`,
          SLACK_BOT_TOKEN: CANARIES.SLACK_BOT_TOKEN,
        }),
        registry: new Registry(),
        logger: createLogger('debug', (line) => lines.push(line)),
      });
      outputs.push(await failureText(refusing.slack!.call('auth.test', {})));
      await refusing.close();
      expectNoCanary('Slack client errors and metrics', outputs.join('\n'));
      expectNoCanary('Slack client logs', lines.join('\n'));
      expect(lines.some((l) => l.includes('Slack refused the bot token'))).toBe(true);
    } finally {
      await Promise.all([vault.close(), slack.close()]);
    }
  });
});
