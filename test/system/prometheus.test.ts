import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { loadSettings } from '../../lib/config/settings';
import { envOf, execCommand, readDockerfile } from '../../testing/dockerfile';
import {
  REPO_ROOT,
  freePort,
  requireBuild,
  startProcess,
  stopProcess,
  type RunningProcess,
} from '../../testing/process';
import {
  startOryStandIn,
  startVaultStandIn,
  type OryStandIn,
  type VaultStandIn,
} from '../../testing/standins';
import { itWithCommand } from '../../testing/tools';

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

/** A real Prometheus scraping CoffeeBuddy, started as the image starts it, on loopback. */
describe('scraped by a real Prometheus', () => {
  let vault: VaultStandIn;
  let ory: OryStandIn;
  let app: RunningProcess | undefined;
  let worker: RunningProcess | undefined;
  let deadLetter: RunningProcess | undefined;
  let prometheus: ChildProcess | undefined;
  let prometheusUrl = '';
  let dir = '';

  async function query(expr: string): Promise<Sample[]> {
    const res = await fetch(`${prometheusUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
    const body = (await res.json()) as { status: string; data: { result: Sample[] } };
    expect(body.status).toBe('success');
    return body.data.result;
  }

  /** Polls until `check` passes, bounded by time. */
  async function eventually<T>(
    what: string,
    check: () => Promise<T | undefined>,
    timeoutMs = 30_000,
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const value = await check().catch(() => undefined);
      if (value !== undefined) return value;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    throw new Error(`timed out waiting for ${what}`);
  }

  beforeAll(async () => {
    requireBuild();
    vault = await startVaultStandIn('active');
    ory = await startOryStandIn(true);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coffeebuddy-prometheus-'));
  });

  afterAll(async () => {
    if (prometheus !== undefined) await stopProcess(prometheus);
    await app?.stop();
    await worker?.stop();
    await deadLetter?.stop();
    await Promise.all([vault.close(), ory.close()]);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  itWithCommand('prometheus', 'apt-get install prometheus')(
    'sees the target up, both dependencies, rising request counts and the rules loaded',
    async () => {
      const runtime = readDockerfile().at(-1)!;
      const [, ...args] = execCommand(runtime)!;
      app = await startProcess({
        args,
        env: {
          ...envOf(runtime),
          NODE_COMPILE_CACHE: path.join(dir, 'cache'),
          VAULT_ADDR: vault.url,
          ORY_URL: ory.url,
        },
      });
      // A Slack worker and the dead-letter function from the same image (their metrics are
      // their own), without a database here: the dead-letter gauge reads NaN, unknown.
      vault.tokens.set('hvs.prometheus', Date.now() + 600_000);
      vault.secrets['coffeebuddy/postgres'] = { password: 'unused' };
      const eventFunction = async (target: string) =>
        startProcess({
          args,
          env: {
            ...envOf(runtime),
            NODE_COMPILE_CACHE: path.join(dir, 'cache'),
            VAULT_ADDR: vault.url,
            VAULT_TOKEN: 'hvs.prometheus',
            ORY_URL: ory.url,
            FUNCTION_TARGET: target,
            // Required in production; nothing is delivered here, so no key is ever read.
            EVENTING_OIDC_AUDIENCE: `coffeebuddy-${target}.coffeebuddy`,
            PG_PASSWORD_VAULT_PATH: 'coffeebuddy/postgres',
            PGPORT: String(await freePort()),
            PG_CONNECT_TIMEOUT_MS: '200',
          },
        });
      worker = await eventFunction('slackWorker');
      deadLetter = await eventFunction('slackDeadLetter');
      const promPort = await freePort();
      prometheusUrl = `http://127.0.0.1:${promPort}`;
      fs.writeFileSync(
        path.join(dir, 'prometheus.yml'),
        [
          'global:',
          '  scrape_interval: 1s',
          '  evaluation_interval: 1s',
          'rule_files:',
          `  - ${path.join(REPO_ROOT, 'monitoring', 'rules.yaml')}`,
          'scrape_configs:',
          '  - job_name: coffeebuddy',
          `    metrics_path: ${loadSettings({}).METRICS_PATH}`,
          '    static_configs:',
          `      - targets: ['127.0.0.1:${app.port}', '127.0.0.1:${worker.port}', '127.0.0.1:${deadLetter.port}']`,
          '',
        ].join('\n'),
      );
      let log = '';
      prometheus = spawn(
        'prometheus',
        [
          `--config.file=${path.join(dir, 'prometheus.yml')}`,
          `--storage.tsdb.path=${path.join(dir, 'data')}`,
          `--web.listen-address=127.0.0.1:${promPort}`,
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      prometheus.stderr?.on(
        'data',
        (chunk: Buffer) => (log = (log + chunk.toString()).slice(-4000)),
      );

      await eventually('Prometheus ready', async () =>
        (await fetch(`${prometheusUrl}/-/ready`)).ok ? true : undefined,
      ).catch((error: unknown) => {
        throw new Error(`${String(error)}\n${log}`);
      });
      await eventually('up == 1 for every target', async () => {
        const samples = await query('up{job="coffeebuddy"} == 1');
        return samples.length === 3 ? true : undefined;
      });

      const ingress = `instance="127.0.0.1:${app.port}"`;
      const dependencies = await eventually('coffeebuddy_dependency_up for both', async () => {
        const samples = await query(`coffeebuddy_dependency_up{${ingress}}`);
        return samples.length === 2 ? samples : undefined;
      });
      expect(Object.fromEntries(dependencies.map((s) => [s.metric.component, s.value[1]]))).toEqual(
        { vault: '1', ory: '1' },
      );

      const total = async () => {
        const [sample] = await query('sum(coffeebuddy_http_requests_total{route="/health/live"})');
        return Number(sample?.value[1] ?? 0);
      };
      const before = await total();
      for (let i = 0; i < 25; i += 1) await fetch(`${app.url}/health/live`);
      await eventually('the request counter to rise by the traffic', async () =>
        (await total()) >= before + 25 ? true : undefined,
      );

      // Every dashboard panel has a value on live pods (the ingress, a worker and the dead-letter
      // function) that have served only this.
      const panels = (
        JSON.parse(
          fs.readFileSync(path.join(REPO_ROOT, 'monitoring', 'dashboard.json'), 'utf8'),
        ) as {
          panels: { title: string; targets?: { expr: string }[] }[];
        }
      ).panels.filter((panel) => (panel.targets ?? []).length > 0);
      expect(panels.length).toBeGreaterThan(10);
      for (const panel of panels) {
        for (const { expr } of panel.targets ?? []) {
          const promql = expr
            .replaceAll('$job', 'coffeebuddy')
            .replaceAll('$__rate_interval', '20s');
          await eventually(`a value for "${panel.title}": ${promql}`, async () =>
            (await query(promql)).length > 0 ? true : undefined,
          );
        }
      }

      vault.state = 'sealed';
      await eventually('vault seen down', async () => {
        const [sample] = await query(`coffeebuddy_dependency_up{component="vault",${ingress}}`);
        return sample?.value[1] === '0' ? true : undefined;
      });

      const rules = (await (await fetch(`${prometheusUrl}/api/v1/rules`)).json()) as {
        data: { groups: { name: string; rules: { name: string; health: string }[] }[] };
      };
      const loaded = rules.data.groups.flatMap((g) => g.rules);
      const written = (
        parse(fs.readFileSync(path.join(REPO_ROOT, 'monitoring', 'rules.yaml'), 'utf8')) as {
          groups: { rules: unknown[] }[];
        }
      ).groups.flatMap((g) => g.rules);
      expect(loaded.length).toBe(written.length);
      expect(loaded.every((r) => r.health === 'ok')).toBe(true);
    },
    90_000,
  );
});
