import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  SETTING_NAMES,
  loadSettings,
  type FunctionTarget,
  type Settings,
} from '../lib/config/settings';
import { REPO_ROOT } from '../testing/process';
import { findCommand, itWithCommand } from '../testing/tools';
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
const BASES = ['knative', 'knative/eventing', 'kong', 'kong/gateway', 'monitoring'];
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

const knativeServices = (docs: Manifest[]): Obj[] =>
  find(docs, 'Service').filter((d) => d.apiVersion === 'serving.knative.dev/v1');

/** The Kafka bootstrap servers the Broker's ConfigMap names. */
const kafkaServers = (docs: Manifest[]): string =>
  only(docs, 'ConfigMap', 'kafka-broker-config').data['bootstrap.servers'];

/** What a ksvc's pods run with: its env, and the ConfigMaps the container takes its environment from. */
function environmentOf(docs: Manifest[], ksvc: Obj): Record<string, string> {
  const container = ksvc.spec.template.spec.containers[0];
  const env: Record<string, string> = {};
  for (const source of container.envFrom) {
    Object.assign(env, only(docs, 'ConfigMap', source.configMapRef.name).data);
  }
  for (const variable of container.env ?? []) env[variable.name] = variable.value;
  return env;
}

/** What the ingress pods run with. */
function settingsOf(docs: Manifest[]): { env: Record<string, string>; settings: Settings } {
  const env = environmentOf(docs, only(docs, 'Service', 'coffeebuddy'));
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
        'Broker',
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
        'SinkBinding',
        'Trigger',
      ].sort(),
    );
    expectValid(docs);
    expect(settingsOf(docs).env.NODE_ENV).toBe('production');
  });

  withKubectl(
    'the overlay changes the image, the host, both addresses and Kafka’s, each written once',
    () => {
      const base = [
        ...kustomize('knative'),
        ...kustomize('knative/eventing'),
        ...kustomize('kong'),
        ...kustomize('kong/gateway'),
      ];
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
        kafka: kafkaServers(overlay),
      };
      expect(values.image).not.toBe(image(base));
      expect(values.image).toMatch(/^[\w.-]+(:\d+)?\/[\w./-]+:[\w.-]+$/);
      expect(values.host).not.toBe(hosts(base)[0]);
      expect(new Set(hosts(overlay))).toEqual(new Set([values.host]));
      expect(values.VAULT_ADDR).not.toBe(settingsOf(base).env.VAULT_ADDR);
      expect(values.ORY_URL).not.toBe(settingsOf(base).env.ORY_URL);
      expect(values.kafka).not.toBe(kafkaServers(base));
      expect(values.kafka).toMatch(/^[\w.-]+:\d+(,[\w.-]+:\d+)*$/);

      // Each value stands in exactly one place of the overlay's files.
      const files = fs
        .readdirSync(path.join(REPO_ROOT, OVERLAY))
        .map((f) => fs.readFileSync(path.join(REPO_ROOT, OVERLAY, f), 'utf8'))
        .join('\n');
      const [imageName] = values.image.split(':');
      for (const value of [
        imageName!,
        values.host,
        values.VAULT_ADDR,
        values.ORY_URL,
        values.kafka,
      ]) {
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

  withKubectl(
    'the PodMonitor scrapes every ksvc’s revision pods’ user port on the metrics path',
    () => {
      const docs = kustomize(OVERLAY);
      const ksvc = only(docs, 'Service', 'coffeebuddy');
      const monitor = only(docs, 'PodMonitor');
      expect(monitor.metadata.namespace).toBe(ksvc.metadata.namespace);
      expect(monitor.spec.selector.matchLabels).toBeUndefined();
      const [selects, ...others] = monitor.spec.selector.matchExpressions;
      expect(others).toEqual([]);
      expect(selects).toMatchObject({ key: 'serving.knative.dev/service', operator: 'In' });
      expect([...selects.values].sort()).toEqual(
        knativeServices(docs)
          .map((s) => s.metadata.name)
          .sort(),
      );
      expect(monitor.spec.podMetricsEndpoints).toEqual([
        // Knative names the user container's port "user-port" on the pods it creates.
        expect.objectContaining({
          port: 'user-port',
          path: settingsOf(docs).settings.METRICS_PATH,
        }),
      ]);
      // The annotations stay, for annotation-based scrapers.
      expect(ksvc.spec.template.metadata.annotations['prometheus.io/scrape']).toBe('true');
    },
  );
});

/** An ISO-8601 duration of hours, minutes and seconds (what Knative's delivery fields take), in ms. */
function durationMs(iso: string): number {
  const match = /^PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?$/.exec(iso);
  if (match === null || iso === 'PT') throw new Error(`not an ISO-8601 duration: ${iso}`);
  const [, hours = '0', minutes = '0', seconds = '0'] = match;
  return ((Number(hours) * 60 + Number(minutes)) * 60 + Number(seconds)) * 1000;
}

/** The functions the worker and dead-letter Services serve. */
const WORKER_TARGET: FunctionTarget = 'slackWorker';
const DEAD_LETTER_TARGET: FunctionTarget = 'slackDeadLetter';
/** Queue-proxy drains up to this long before the user container gets SIGTERM. */
const QUEUE_PROXY_DRAIN_MS = 30_000;
/** PostgreSQL's default max_connections. */
const POSTGRES_MAX_CONNECTIONS = 100;

describe('Slack work through Knative Eventing, as the overlay builds it', () => {
  const docs = findCommand('kubectl') === undefined ? [] : kustomize(OVERLAY);
  const ingress = () => only(docs, 'Service', 'coffeebuddy');
  const broker = () => only(docs, 'Broker', 'coffeebuddy');
  const trigger = () => only(docs, 'Trigger', 'coffeebuddy-slack-worker');
  /** The ksvc a Destination's ref names, which must be in the bundle. */
  const ksvcOf = (destination: Obj): Obj => {
    expect(destination.ref).toMatchObject({
      apiVersion: 'serving.knative.dev/v1',
      kind: 'Service',
    });
    expect(destination.ref.namespace ?? trigger().metadata.namespace).toBe(
      trigger().metadata.namespace,
    );
    return only(docs, 'Service', destination.ref.name);
  };
  const worker = () => ksvcOf(trigger().spec.subscriber);
  const deadLetter = () => ksvcOf(trigger().spec.delivery.deadLetterSink);
  const targetOf = (ksvc: Obj) => environmentOf(docs, ksvc).FUNCTION_TARGET;
  const annotation = (ksvc: Obj, key: string) =>
    ksvc.spec.template.metadata.annotations[`autoscaling.knative.dev/${key}`];

  withKubectl('the Broker is a Kafka Broker configured by a ConfigMap in the bundle', () => {
    expect(broker().metadata.annotations['eventing.knative.dev/broker.class']).toBe('Kafka');
    const { config } = broker().spec;
    expect(config).toMatchObject({ apiVersion: 'v1', kind: 'ConfigMap' });
    expect(config.namespace ?? broker().metadata.namespace).toBe(broker().metadata.namespace);
    const map = only(docs, 'ConfigMap', config.name);
    expect(map.metadata.namespace).toBe(broker().metadata.namespace);
    expect(Number(map.data['default.topic.partitions'])).toBeGreaterThanOrEqual(1);
    // A record written with acks=all survives the loss of a Kafka broker.
    expect(Number(map.data['default.topic.replication.factor'])).toBeGreaterThanOrEqual(3);
    expect(map.data['bootstrap.servers']).toBe(kafkaServers(docs));
  });

  withKubectl('the SinkBinding gives the ingress ksvc, the one Kong routes to, the Broker', () => {
    const binding = only(docs, 'SinkBinding', 'coffeebuddy-slack');
    expect(binding.metadata.namespace).toBe(ingress().metadata.namespace);
    expect(binding.spec.subject).toEqual({
      apiVersion: ingress().apiVersion,
      kind: 'Service',
      name: ingress().metadata.name,
    });
    expect(binding.spec.sink).toEqual({
      ref: { apiVersion: broker().apiVersion, kind: 'Broker', name: broker().metadata.name },
    });
    expect(targetOf(ingress())).toBeUndefined();
    const upstream = find(docs, 'Service').find((d) => d.spec?.type === 'ExternalName');
    expect(upstream!.metadata.annotations['konghq.com/host-header']).toMatch(
      new RegExp(`^${ingress().metadata.name}\\.`),
    );
  });

  withKubectl('the Trigger takes every Slack type from the Broker to the worker', () => {
    expect(trigger().spec.broker).toBe(broker().metadata.name);
    expect(trigger().spec.filter).toBeUndefined();
    expect(trigger().spec.filters).toEqual([{ prefix: { type: 'com.slack.' } }]);
    // The types the ingress publishes (the contract), and one it does not.
    const prefix: string = trigger().spec.filters[0].prefix.type;
    for (const type of ['com.slack.event.app_mention', 'com.slack.interaction.block_actions']) {
      expect(type.startsWith(prefix)).toBe(true);
    }
    expect('dev.knative.sources.ping'.startsWith(prefix)).toBe(false);
    expect(targetOf(worker())).toBe(WORKER_TARGET);
    expect(targetOf(deadLetter())).toBe(DEAD_LETTER_TARGET);
    expect(worker().metadata.name).not.toBe(deadLetter().metadata.name);
  });

  withKubectl(
    'delivery retries with exponential backoff, each attempt bounded, then dead-letters',
    () => {
      const { delivery } = trigger().spec;
      expect(delivery.retry).toBeGreaterThanOrEqual(3);
      expect(delivery.backoffPolicy).toBe('exponential');
      expect(durationMs(delivery.backoffDelay)).toBeGreaterThan(0);
      // queue-proxy must not end an attempt before the dispatcher's timeout does.
      expect(worker().spec.template.spec.timeoutSeconds * 1000).toBeGreaterThan(
        durationMs(delivery.timeout),
      );
      expect(deadLetter().metadata.namespace).toBe(trigger().metadata.namespace);
    },
  );

  withKubectl('a rate-limited worker’s Retry-After is honoured, up to a minute', () => {
    const { delivery } = trigger().spec;
    // Slack's Retry-After for chat.postMessage is seconds to a minute; the worker passes it on.
    expect(durationMs(delivery.retryAfterMax)).toBe(60_000);
  });

  withKubectl(
    'an attempt outlasts a handler, and the retries outlast the lease of a dead worker’s claim',
    () => {
      const { delivery } = trigger().spec;
      const settings = loadSettings(environmentOf(docs, worker()));
      const handlerMs = settings.SLACK_HANDLER_TIMEOUT_MS;
      expect(durationMs(delivery.timeout)).toBeGreaterThan(handlerMs);
      // Exponential backoff waits backoffDelay·2^n; the smallest reading starts at n = 0.
      const waitsMs = Array.from(
        { length: delivery.retry },
        (_, n) => durationMs(delivery.backoffDelay) * 2 ** n,
      );
      expect(waitsMs.reduce((a, b) => a + b, 0)).toBeGreaterThan(settings.SLACK_WORK_LEASE_MS);
      // A draining worker finishes or releases its claims within SHUTDOWN_TIMEOUT_MS.
      expect(settings.SHUTDOWN_TIMEOUT_MS).toBeGreaterThan(handlerMs);
    },
  );

  withKubectl(
    'the worker and dead-letter ksvcs run as the ingress does, inside the cluster',
    () => {
      const podSpec = (ksvc: Obj) => ksvc.spec.template.spec;
      const container = (ksvc: Obj) => podSpec(ksvc).containers[0];
      for (const ksvc of [worker(), deadLetter()]) {
        expect(ksvc.metadata.labels['networking.knative.dev/visibility']).toBe('cluster-local');
        expect(ksvc.metadata.namespace).toBe(ingress().metadata.namespace);
        for (const field of ['serviceAccountName', 'automountServiceAccountToken', 'volumes']) {
          expect([field, podSpec(ksvc)[field]]).toEqual([field, podSpec(ingress())[field]]);
        }
        for (const field of [
          'image',
          'ports',
          'envFrom',
          'resources',
          'readinessProbe',
          'livenessProbe',
          'securityContext',
          'volumeMounts',
        ]) {
          expect([field, container(ksvc)[field]]).toEqual([field, container(ingress())[field]]);
        }
        // Scraped like the ingress, on the same port and path.
        for (const key of ['prometheus.io/scrape', 'prometheus.io/port', 'prometheus.io/path']) {
          expect(ksvc.spec.template.metadata.annotations[key]).toBe(
            ingress().spec.template.metadata.annotations[key],
          );
        }
        // A bounded concurrency, and a grace period that leaves the drain its whole timeout.
        expect(podSpec(ksvc).containerConcurrency).toBeGreaterThan(0);
        const settings = loadSettings(environmentOf(docs, ksvc));
        expect(podSpec(ksvc).timeoutSeconds * 1000 - QUEUE_PROXY_DRAIN_MS).toBeGreaterThanOrEqual(
          settings.SHUTDOWN_TIMEOUT_MS,
        );
        expect(settings.PG_PASSWORD_VAULT_PATH).not.toBe('');
      }
      // Never scaled to zero: the dead-letter alert counts from a series already scraped at 0.
      expect(Number(annotation(deadLetter(), 'min-scale'))).toBeGreaterThanOrEqual(1);
      expect(Number(annotation(worker(), 'min-scale'))).toBeGreaterThanOrEqual(1);
    },
  );

  withKubectl('the ksvcs that use PostgreSQL stay under its connection limit at max scale', () => {
    const connections = [worker(), deadLetter()].map(
      (ksvc) =>
        Number(annotation(ksvc, 'max-scale')) * loadSettings(environmentOf(docs, ksvc)).PG_POOL_MAX,
    );
    // The migration Job holds one more.
    expect(connections.reduce((a, b) => a + b, 1)).toBeLessThan(POSTGRES_MAX_CONNECTIONS);
  });

  withKubectl('the worker and dead-letter ksvcs set only declared settings, all valid', () => {
    for (const ksvc of [worker(), deadLetter()]) {
      const env = environmentOf(docs, ksvc);
      expect(
        Object.keys(env).filter((name) => !(SETTING_NAMES as string[]).includes(name)),
      ).toEqual([]);
      expect(() => loadSettings(env)).not.toThrow();
    }
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
