import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { loadSettings, type Settings } from '../lib/config/settings';
import { REPO_ROOT } from '../testing/process';
import { itWithCommand } from '../testing/tools';
import { knativeAdmissionProblems } from './support/knative-rules';
import {
  KINDS_WITHOUT_UPSTREAM_SCHEMA,
  SCHEMAS_PRESENT,
  loadManifests,
  loadValidators,
  modelProblems,
  parseManifests,
  schemaProblems,
  type Manifest,
} from './support/manifests';

type Obj = Record<string, any>;

/** The deploy bundle as kustomize builds it: every base, and the example overlay. */
const BASES = ['knative', 'kong', 'kong/gateway', 'monitoring'];
const OVERLAY = 'deploy/example';
const withKubectl = itWithCommand('kubectl', 'kubectl 1.32 or newer (kustomize built in)');

function kustomize(dir: string): Manifest[] {
  const result = spawnSync('kubectl', ['kustomize', path.join(REPO_ROOT, dir)], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (result.status !== 0) throw new Error(`kubectl kustomize ${dir}: ${result.stderr}`);
  return parseManifests(result.stdout, dir);
}

const gvk = (doc: Manifest) => `${doc.apiVersion}/${doc.kind}`;
const find = (docs: Manifest[], kind: string, name?: string): Obj[] =>
  docs.filter((d) => d.kind === kind && (name === undefined || d.metadata.name === name));
const only = (docs: Manifest[], kind: string, name?: string): Obj => {
  const found = find(docs, kind, name);
  expect(found).toHaveLength(1);
  return found[0]!;
};

/** What the pods run with: the ConfigMap the container takes its environment from. */
function settingsOf(docs: Manifest[]): { env: Record<string, string>; settings: Settings } {
  const ksvc = only(docs, 'Service', 'coffeebuddy');
  const container = ksvc.spec.template.spec.containers[0];
  const env: Record<string, string> = {};
  for (const source of container.envFrom) {
    Object.assign(env, only(docs, 'ConfigMap', source.configMapRef.name).data);
  }
  for (const variable of container.env ?? []) env[variable.name] = variable.value;
  return { env, settings: loadSettings(env) };
}

/**
 * Every document valid: npm models everywhere (KongPlugin has none: its config is checked against
 * Kong's documented fields in manifests.test.ts), upstream schemas (strict) where they exist.
 */
function expectValid(docs: Manifest[]): void {
  const modelled = docs.filter((d) => d.kind !== 'KongPlugin');
  expect(modelProblems(modelled)).toEqual(modelled.map(() => []));
  if (SCHEMAS_PRESENT) {
    const validators = loadValidators();
    for (const doc of docs.filter((d) => !KINDS_WITHOUT_UPSTREAM_SCHEMA.includes(gvk(d)))) {
      expect([gvk(doc), doc.metadata.name, schemaProblems(validators, doc)]).toEqual([
        gvk(doc),
        doc.metadata.name,
        [],
      ]);
    }
  }
  for (const ksvc of find(docs, 'Service').filter((d) => d.apiVersion.startsWith('serving'))) {
    expect(knativeAdmissionProblems(ksvc)).toEqual([]);
  }
}

describe('the files of the Gateway piece and the monitoring base, on any machine', () => {
  // monitoring/ also holds rules.yaml and rules.test.yaml, promtool's files: no kind.
  const files = [...loadManifests('kong/gateway'), ...loadManifests('monitoring')].filter(
    (m) => 'kind' in (m.doc as object),
  );

  it('the Gateway piece and the PodMonitor validate against their npm models', () => {
    expect(files.map((m) => m.doc.kind).sort()).toEqual(
      ['Gateway', 'GatewayClass', 'HTTPRoute', 'PodMonitor', 'PrometheusRule'].sort(),
    );
    expect(modelProblems(files.map((m) => m.doc))).toEqual(files.map(() => []));
  });
});

describe('kubectl kustomize', () => {
  withKubectl.each(BASES)('builds the base %s, every document valid', (dir) => {
    const docs = kustomize(dir);
    expect(docs.length).toBeGreaterThan(0);
    expectValid(docs);
  });

  withKubectl('builds the example overlay: all of it, valid, settings that load', () => {
    const docs = kustomize(OVERLAY);
    expect([...new Set(docs.map((d) => d.kind))].sort()).toEqual(
      [
        'ConfigMap',
        'Gateway',
        'GatewayClass',
        'HTTPRoute',
        'Job',
        'KongPlugin',
        'PodMonitor',
        'PrometheusRule',
        'Service',
        'ServiceAccount',
      ].sort(),
    );
    expectValid(docs);
    expect(settingsOf(docs).env.NODE_ENV).toBe('production');
  });

  withKubectl(
    'the overlay changes the image, the host and both addresses, each written once',
    () => {
      const base = [...kustomize('knative'), ...kustomize('kong'), ...kustomize('kong/gateway')];
      const overlay = kustomize(OVERLAY);
      const image = (docs: Manifest[]) =>
        only(docs, 'Service', 'coffeebuddy').spec.template.spec.containers[0].image as string;
      const hosts = (docs: Manifest[]) => [
        ...only(docs, 'HTTPRoute', 'coffeebuddy-slack').spec.hostnames,
        ...only(docs, 'HTTPRoute', 'coffeebuddy-https-redirect').spec.hostnames,
        ...only(docs, 'Gateway', 'kong').spec.listeners.map((l: Obj) => l.hostname),
      ];
      const values = {
        image: image(overlay),
        host: hosts(overlay)[0] as string,
        VAULT_ADDR: settingsOf(overlay).env.VAULT_ADDR!,
        ORY_URL: settingsOf(overlay).env.ORY_URL!,
      };
      expect(values.image).not.toBe(image(base));
      expect(values.image).toMatch(/^[\w.-]+(:\d+)?\/[\w./-]+:[\w.-]+$/);
      expect(values.host).not.toBe(hosts(base)[0]);
      expect(new Set(hosts(overlay))).toEqual(new Set([values.host]));
      expect(values.VAULT_ADDR).not.toBe(settingsOf(base).env.VAULT_ADDR);
      expect(values.ORY_URL).not.toBe(settingsOf(base).env.ORY_URL);

      // Each value stands in exactly one place of the overlay's files.
      const files = fs
        .readdirSync(path.join(REPO_ROOT, OVERLAY))
        .map((f) => fs.readFileSync(path.join(REPO_ROOT, OVERLAY, f), 'utf8'))
        .join('\n');
      const [imageName] = values.image.split(':');
      for (const value of [imageName!, values.host, values.VAULT_ADDR, values.ORY_URL]) {
        expect([value, files.split(value).length - 1]).toEqual([value, 1]);
      }
    },
  );

  withKubectl('Slack reaches only the three Slack paths over HTTPS; HTTP only redirects', () => {
    const docs = kustomize(OVERLAY);
    const gateway = only(docs, 'Gateway', 'kong');
    const https = gateway.spec.listeners.find((l: Obj) => l.name === 'https');
    const http = gateway.spec.listeners.find((l: Obj) => l.name === 'http');
    expect(https).toMatchObject({ protocol: 'HTTPS', port: 443, tls: { mode: 'Terminate' } });
    expect(https.tls.certificateRefs).toHaveLength(1);
    expect(gateway.metadata.annotations['cert-manager.io/cluster-issuer']).toBeTruthy();
    expect(http).toMatchObject({ protocol: 'HTTP', port: 80 });
    expect(gateway.spec.gatewayClassName).toBe(only(docs, 'GatewayClass').metadata.name);

    const slack = only(docs, 'HTTPRoute', 'coffeebuddy-slack');
    for (const parent of slack.spec.parentRefs) {
      expect(parent).toMatchObject({
        name: gateway.metadata.name,
        namespace: gateway.metadata.namespace,
        sectionName: 'https',
      });
    }
    expect(https.allowedRoutes.namespaces.selector.matchLabels).toEqual({
      'kubernetes.io/metadata.name': slack.metadata.namespace,
    });
    const paths = slack.spec.rules.flatMap((r: Obj) => r.matches.map((m: Obj) => m.path.value));
    expect(paths.sort()).toEqual(['/slack/commands', '/slack/events', '/slack/interactions']);

    // Whatever is attached to the HTTP listener only redirects to HTTPS.
    const onHttp = find(docs, 'HTTPRoute').filter((r) =>
      r.spec.parentRefs.some((p: Obj) => p.sectionName === 'http'),
    );
    expect(onHttp.map((r) => r.metadata.name)).toEqual(['coffeebuddy-https-redirect']);
    for (const rule of onHttp[0]!.spec.rules) {
      expect(rule.backendRefs).toBeUndefined();
      expect(rule.filters).toEqual([
        { type: 'RequestRedirect', requestRedirect: { scheme: 'https', statusCode: 301 } },
      ]);
    }
  });

  withKubectl('the PodMonitor scrapes the revision pods’ user port on the metrics path', () => {
    const docs = kustomize(OVERLAY);
    const ksvc = only(docs, 'Service', 'coffeebuddy');
    const monitor = only(docs, 'PodMonitor');
    expect(monitor.metadata.namespace).toBe(ksvc.metadata.namespace);
    expect(monitor.spec.selector.matchLabels).toEqual({
      'serving.knative.dev/service': ksvc.metadata.name,
    });
    expect(monitor.spec.podMetricsEndpoints).toEqual([
      // Knative names the user container's port "user-port" on the pods it creates.
      expect.objectContaining({ port: 'user-port', path: settingsOf(docs).settings.METRICS_PATH }),
    ]);
    // The annotations stay, for annotation-based scrapers.
    expect(ksvc.spec.template.metadata.annotations['prometheus.io/scrape']).toBe('true');
  });
});

describe('Vault as code', () => {
  const read = (name: string) => fs.readFileSync(path.join(REPO_ROOT, 'vault', name), 'utf8');
  const docs = loadManifests('knative').map((m) => m.doc);
  const { settings } = settingsOf(docs);
  const account = only(docs, 'ServiceAccount');
  const script = read('configure.sh');
  const role = JSON.parse(read('kubernetes-role.json'));

  it('the policy reads exactly the KV v2 paths the app reads, and nothing else', () => {
    const blocks = [...read('policy.hcl').matchAll(/path\s+"([^"]+)"\s*\{([^}]*)\}/g)];
    expect(blocks.map((b) => b[1])).toEqual([
      `${settings.VAULT_KV_MOUNT}/data/${settings.SLACK_SIGNING_SECRET_VAULT_PATH}`,
      `${settings.VAULT_KV_MOUNT}/data/${settings.PG_PASSWORD_VAULT_PATH}`,
    ]);
    for (const block of blocks) {
      expect(block[2]!.replace(/\s+/g, ' ').trim()).toBe('capabilities = ["read"]');
    }
  });

  it('the role is the one the app logs in as, bound to its ServiceAccount and namespace', () => {
    expect(script).toContain(
      `vault write auth/${settings.VAULT_K8S_MOUNT}/role/${settings.VAULT_K8S_ROLE} @kubernetes-role.json`,
    );
    expect(role.bound_service_account_names).toEqual([account.metadata.name]);
    expect(role.bound_service_account_namespaces).toEqual([account.metadata.namespace]);
    const policy = /vault policy write (\S+) policy\.hcl/.exec(script)?.[1];
    expect(role.token_policies).toEqual([policy]);
  });

  it('tells where the secret goes, under the key the app reads', () => {
    expect(script).toContain(
      `vault kv put ${settings.VAULT_KV_MOUNT}/${settings.SLACK_SIGNING_SECRET_VAULT_PATH} ${settings.SLACK_SIGNING_SECRET_VAULT_KEY}=-`,
    );
    expect(script).toContain(
      `vault kv put ${settings.VAULT_KV_MOUNT}/${settings.PG_PASSWORD_VAULT_PATH} ${settings.PG_PASSWORD_VAULT_KEY}=-`,
    );
    expect(spawnSync('bash', ['-n', path.join(REPO_ROOT, 'vault', 'configure.sh')]).status).toBe(0);
  });
});
