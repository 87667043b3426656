import { dependencies } from '../../package.json';
import { serveFunction } from '../../testing/server';
import { FRAMEWORK_MAIN, requireBuild, runToExit, startProcess } from '../../testing/process';
import { absentUrl } from '../../testing/standins';

const target = (name: string) => [FRAMEWORK_MAIN, `--target=${name}`];

beforeAll(() => {
  requireBuild();
});

describe('the built functions under functions-framework', () => {
  it.each([
    ['coffeebuddy', '/health/live', 200],
    ['healthLive', '/', 200],
    ['healthReady', '/', 503],
    ['metrics', '/', 200],
    // Routed as behind the entry: the probes beside POST /, which takes no GET.
    ['slackWorker', '/health/live', 200],
    ['slackWorker', '/', 405],
    ['slackDeadLetter', '/health/live', 200],
  ])('%s runs alone with --target', async (name, path, status) => {
    const running = await startProcess({
      args: target(name),
      env: {
        NODE_ENV: 'production',
        VAULT_ADDR: await absentUrl(),
        ORY_URL: await absentUrl(),
        // Served alone, an event function sees no request headers: it cannot check a sender.
        EVENTING_OIDC_AUDIENCE: 'none',
      },
      readyPath: path,
      readyStatus: status,
    });
    expect(await running.stop()).toBe(0);
  });

  it('answers /health/ready 503 naming Vault and Ory unreachable', async () => {
    const running = await startProcess({
      args: target('coffeebuddy'),
      env: { NODE_ENV: 'production', VAULT_ADDR: await absentUrl(), ORY_URL: await absentUrl() },
    });
    try {
      const res = await fetch(`${running.url}/health/ready`);
      expect(res.status).toBe(503);
      const body = (await res.json()) as {
        detail: { status: string; components: Record<string, { error: string }> };
      };
      expect(body.detail.status).toBe('degraded');
      expect(body.detail.components.vault?.error).toBe('connection refused');
      expect(body.detail.components.ory?.error).toBe('connection refused');
    } finally {
      expect(await running.stop()).toBe(0);
    }
  });

  it('refuses to start on bad settings with one message and no stack trace', async () => {
    const { code, stdout, stderr } = await runToExit(target('coffeebuddy'), {
      NODE_ENV: 'production',
      PORT: '9090abc',
      VAULT_ADDR: 'http://root:s3cr3t-token@vault:8200',
      READINESS_TIMEOUT_MS: 'soon',
      LOG_LEVEL: 'loud',
      METRICS_PATH: '/health/metrics',
    });
    expect(code).toBe(78);
    expect(stdout).toBe('');
    for (const name of [
      'PORT',
      'VAULT_ADDR',
      'ORY_URL',
      'READINESS_TIMEOUT_MS',
      'LOG_LEVEL',
      'METRICS_PATH',
    ]) {
      expect(stderr).toContain(`${name}: `);
    }
    expect(stderr).not.toMatch(/^\s+at /m);
    expect(stderr).not.toContain('s3cr3t-token');
  });
});

describe('what the production entry relies on in functions-framework (pinned in package.json)', () => {
  it('serves a registered function through an Express app, the test server’s request listener', () => {
    const server = serveFunction(() => undefined);
    const [listener] = server.listeners('request');
    expect(typeof listener).toBe('function');
    expect(typeof (listener as { use?: unknown }).use).toBe('function');
  });

  it('is pinned to one exact version', () => {
    expect(dependencies['@google-cloud/functions-framework']).toMatch(/^\d+\.\d+\.\d+$/);
  });
});
