import request from 'supertest';
import { createApp } from '../functions/app';
import { createLogger } from '../lib/logger';
import { REQUIRED_IN_PRODUCTION, SETTING_NAMES, loadSettings } from '../lib/config/settings';
import { FakeClient } from '../testing/fakes';
import { knativeAdmissionProblems } from './support/knative-rules';
import {
  FORBIDDEN_PLUGINS,
  pluginConfigProblems,
  routeMatches,
  type HttpRouteMatch,
} from './support/kong-rules';
import {
  KINDS_WITHOUT_UPSTREAM_SCHEMA,
  SCHEMAS_DIR,
  SCHEMAS_PRESENT,
  loadManifests,
  loadValidators,
  modelProblems,
  schemaProblems,
  type LoadedManifest,
  type Manifest,
} from './support/manifests';
import { serveFunction } from '../testing/server';
import { itWhen } from '../testing/tools';

type Obj = Record<string, any>;

const manifests = loadManifests('knative', 'kong');
const docs = manifests.map((m) => m.doc);
const find = (kind: string, apiVersionPrefix = ''): Obj[] =>
  docs.filter((d) => d.kind === kind && d.apiVersion.startsWith(apiVersionPrefix));
const one = (kind: string, apiVersionPrefix = ''): Obj => {
  const found = find(kind, apiVersionPrefix);
  expect(found).toHaveLength(1);
  return found[0]!;
};

const ksvc = one('Service', 'serving.knative.dev/');
const container: Obj = ksvc.spec.template.spec.containers[0];
const configMaps = find('ConfigMap');
const defaults = loadSettings({});

/** The environment the container gets: env entries and the keys of envFrom ConfigMaps. */
function containerEnvironment(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const source of container.envFrom ?? []) {
    const map = configMaps.find((c) => c.metadata.name === source.configMapRef?.name);
    expect(map).toBeDefined();
    Object.assign(env, map!.data);
  }
  for (const variable of container.env ?? []) env[variable.name] = variable.value;
  return env;
}

const titled = (m: LoadedManifest): [string, LoadedManifest] => [
  `${m.file} ${m.doc.kind}/${m.doc.metadata.name}`,
  m,
];
const kongPlugins = (m: LoadedManifest) => m.doc.kind === 'KongPlugin';

describe('every manifest validates against its npm model (any machine)', () => {
  // KongPlugin has no npm model: its config is checked against Kong's documented fields below.
  const modelled = manifests.filter((m) => !kongPlugins(m));
  const problems = modelProblems(modelled.map((m) => m.doc));

  it.each(modelled.map((m, i): [string, number] => [titled(m)[0], i]))('%s', (_name, i) => {
    expect(problems[i]).toEqual([]);
  });

  it('fails a kind that has no model, and a document with a type error', () => {
    const broken = structuredClone(ksvc) as Manifest & Obj;
    broken.spec.template.spec.containerConcurrency = 'zero';
    const [unknown, wrongType] = modelProblems([
      { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } },
      broken,
    ]);
    expect(unknown).toEqual(['no model for example.com/v1/Widget']);
    expect(wrongType!.join()).toContain('containerConcurrency');
  });
});

describe('every manifest validates strictly against its upstream schema (unknown fields too)', () => {
  const strictly = itWhen(
    SCHEMAS_PRESENT,
    `upstream schemas not found at ${SCHEMAS_DIR}: manifests not checked for unknown fields`,
  );
  const validators = SCHEMAS_PRESENT ? loadValidators() : undefined;

  const withSchema = manifests.filter(
    (m) => !KINDS_WITHOUT_UPSTREAM_SCHEMA.includes(`${m.doc.apiVersion}/${m.doc.kind}`),
  );
  strictly.each(withSchema.map(titled))('%s', (_name, { doc }) => {
    expect(schemaProblems(validators!, doc)).toEqual([]);
  });

  strictly('fails a kind that has no schema, a type error and an unknown field', () => {
    const unknown: Manifest = {
      apiVersion: 'example.com/v1',
      kind: 'Widget',
      metadata: { name: 'w' },
    };
    expect(schemaProblems(validators!, unknown)).toEqual(['no schema for example.com/v1 Widget']);
    const broken = structuredClone(ksvc) as Manifest & Obj;
    broken.spec.template.spec.containerConcurrency = 'unlimited';
    expect(schemaProblems(validators!, broken).join()).toContain('containerConcurrency');
    const typo = structuredClone(one('HTTPRoute')) as Manifest & Obj;
    typo.spec.rules[0].matches[0].path.pathh = '/x';
    expect(schemaProblems(validators!, typo).join()).toContain('additional properties');
    const strict = structuredClone(one('ConfigMap')) as Manifest & Obj;
    strict.spec = {};
    expect(schemaProblems(validators!, strict).join()).toContain('additional properties');
  });
});

describe('the manifests', () => {
  it('uses no KongIngress (deprecated; its route and proxy fields are rejected since KIC 3.0)', () => {
    expect(find('KongIngress')).toEqual([]);
  });
});

describe('the Knative Service passes the admission rules the schema lacks', () => {
  it('has no problems', () => {
    expect(knativeAdmissionProblems(ksvc)).toEqual([]);
  });

  it.each<[string, (s: Obj) => void, string]>([
    [
      'a second port',
      (s) => s.spec.template.spec.containers[0].ports.push({ containerPort: 8081 }),
      'exactly one container port',
    ],
    [
      'a reserved port',
      (s) => (s.spec.template.spec.containers[0].ports[0].containerPort = 8012),
      'reserved',
    ],
    [
      'env PORT',
      (s) => s.spec.template.spec.containers[0].env.push({ name: 'PORT', value: '1' }),
      'env PORT is reserved',
    ],
    [
      'env K_SERVICE',
      (s) => s.spec.template.spec.containers[0].env.push({ name: 'K_SERVICE', value: 'x' }),
      'reserved',
    ],
    [
      'lifecycle',
      (s) => (s.spec.template.spec.containers[0].lifecycle = {}),
      'lifecycle is not allowed',
    ],
    [
      'a grace period',
      (s) => (s.spec.template.spec.terminationGracePeriodSeconds = 30),
      'terminationGracePeriodSeconds',
    ],
    [
      'a readiness timeout without period',
      (s) => (s.spec.template.spec.containers[0].readinessProbe.timeoutSeconds = 1),
      'timeoutSeconds is not allowed',
    ],
    [
      'a readiness port',
      (s) => (s.spec.template.spec.containers[0].readinessProbe.httpGet.port = 8080),
      'must not set a port',
    ],
    [
      'a numeric annotation',
      (s) => (s.spec.template.metadata.annotations['autoscaling.knative.dev/min-scale'] = 1),
      'must be a string',
    ],
    [
      'a short timeout',
      (s) => (s.spec.template.spec.timeoutSeconds = 10),
      'timeoutSeconds must be',
    ],
  ])('catches %s', (_name, mutate, problem) => {
    const broken = structuredClone(ksvc);
    mutate(broken);
    expect(knativeAdmissionProblems(broken).join('\n')).toContain(problem);
  });

  it('runs hardened: non-root, read-only root, no privileges, writable /tmp only', () => {
    expect(container.securityContext).toEqual({
      runAsNonRoot: true,
      runAsUser: expect.any(Number),
      runAsGroup: expect.any(Number),
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(container.volumeMounts).toEqual([{ name: 'tmp', mountPath: '/tmp' }]);
    expect(ksvc.spec.template.spec.volumes).toEqual([
      { name: 'tmp', emptyDir: expect.any(Object) },
    ]);
    expect(container.resources.requests).toBeDefined();
    expect(container.resources.limits).toBeDefined();
    expect(container.startupProbe).toBeUndefined();
    // The token is mounted only for Vault's Kubernetes auth.
    const mounted = containerEnvironment().VAULT_K8S_ROLE !== undefined;
    expect(ksvc.spec.template.spec.automountServiceAccountToken).toBe(mounted);
    expect(one('ServiceAccount').automountServiceAccountToken).toBe(mounted);
    expect(ksvc.spec.template.spec.serviceAccountName).toBe(one('ServiceAccount').metadata.name);
  });

  it('is cluster-local, kept warm, and scraped on its own port', () => {
    const annotations = ksvc.spec.template.metadata.annotations;
    expect(ksvc.metadata.labels['networking.knative.dev/visibility']).toBe('cluster-local');
    expect(annotations['autoscaling.knative.dev/min-scale']).toBe('1');
    expect(Number(annotations['autoscaling.knative.dev/max-scale'])).toBeGreaterThanOrEqual(1);
    expect(Number(annotations['autoscaling.knative.dev/target'])).toBeGreaterThan(0);
    expect(annotations['prometheus.io/scrape']).toBe('true');
  });
});

const app = createApp({
  settings: defaults,
  vaultClientFactory: () => new FakeClient(),
  oryClientFactory: () => new FakeClient(),
  logger: createLogger('error'),
});
const server = serveFunction(app.functions.coffeebuddy!);
afterAll(() => {
  return app.close();
});

describe('the manifests agree with the code', () => {
  it('probes and scrapes paths the app serves', async () => {
    const annotations = ksvc.spec.template.metadata.annotations;
    await request(server).get(container.readinessProbe.httpGet.path).expect(200);
    await request(server).get(container.livenessProbe.httpGet.path).expect(200, { status: 'live' });
    await request(server).get(annotations['prometheus.io/path']).expect(200);
    expect(annotations['prometheus.io/path']).toBe(defaults.METRICS_PATH);
  });

  it('uses the app default port for the container and the scrape', () => {
    expect(container.ports[0].containerPort).toBe(defaults.PORT);
    expect(ksvc.spec.template.metadata.annotations['prometheus.io/port']).toBe(
      String(defaults.PORT),
    );
  });

  it('sets only declared settings, every one required in production, all valid', () => {
    const env = containerEnvironment();
    for (const name of Object.keys(env)) expect(SETTING_NAMES).toContain(name);
    for (const name of REQUIRED_IN_PRODUCTION) expect(env[name]).toBeTruthy();
    expect(env.NODE_ENV).toBe('production');
    expect(() => loadSettings(env)).not.toThrow();
  });

  it('sends Kong to Kourier with the ksvc cluster-local name as Host', () => {
    const route = one('HTTPRoute');
    const backendNames = route.spec.rules.flatMap((r: Obj) => r.backendRefs.map((b: Obj) => b));
    expect(backendNames).toHaveLength(1);
    const backend = backendNames[0];
    const upstream = find('Service', 'v1').find((s) => s.metadata.name === backend.name);
    expect(upstream).toBeDefined();
    expect(upstream!.metadata.namespace).toBe(route.metadata.namespace);
    expect(upstream!.spec.type).toBe('ExternalName');
    expect(upstream!.spec.externalName).toBe('kourier-internal.kourier-system.svc.cluster.local');
    expect(upstream!.spec.ports.map((p: Obj) => p.port)).toContain(backend.port);
    expect(backend.port).toBe(80);
    expect(upstream!.metadata.annotations['konghq.com/host-header']).toBe(
      `${ksvc.metadata.name}.${ksvc.metadata.namespace}.svc.cluster.local`,
    );
    expect(route.metadata.annotations['konghq.com/preserve-host']).toBe('false');
    expect(
      Number(upstream!.metadata.annotations['konghq.com/connect-timeout']),
    ).toBeLessThanOrEqual(5000);
    expect(Number(upstream!.metadata.annotations['konghq.com/retries'])).toBeLessThanOrEqual(2);
  });
});

describe('the Kong route', () => {
  const route = one('HTTPRoute');
  const matches: HttpRouteMatch[] = route.spec.rules.flatMap((r: Obj) => r.matches);
  const exposed = (method: string, path: string) =>
    matches.some((m) => routeMatches(m, method, path));

  it('is HTTPS only, on the HTTPS listener', () => {
    expect(route.metadata.annotations['konghq.com/protocols']).toBe('https');
    expect(route.spec.parentRefs.every((p: Obj) => p.sectionName === 'https')).toBe(true);
    expect(route.spec.hostnames.length).toBeGreaterThan(0);
  });

  it('matches exactly POST on the Slack paths the app serves', async () => {
    const slackPaths = ['/slack/commands', '/slack/events', '/slack/interactions'];
    for (const path of slackPaths) {
      expect(exposed('POST', path)).toBe(true);
      expect(exposed('GET', path)).toBe(false);
      // A route the app serves: unsigned, it is refused (401/503), never 404.
      const res = await request(server).post(path).send('x');
      expect(res.status).not.toBe(404);
    }
    for (const path of ['/slack', '/slack/', '/slack/other', '/slackers', '/slack/commands/x']) {
      expect(exposed('POST', path)).toBe(false);
    }
    for (const m of matches) expect(m.method).toBe('POST');
  });

  it.each(['/health/live', '/health/ready', '/metrics', '/', '/anything'])(
    'never exposes %s',
    (path) => {
      for (const method of ['GET', 'HEAD', 'POST']) expect(exposed(method, path)).toBe(false);
    },
  );

  it('uses plugins that exist, with documented fields, and none that rewrite or judge agents', () => {
    const names = String(route.metadata.annotations['konghq.com/plugins'])
      .split(',')
      .map((s) => s.trim());
    const plugins = find('KongPlugin');
    for (const name of names) {
      const plugin = plugins.find((p) => p.metadata.name === name);
      expect(plugin).toBeDefined();
      expect(plugin!.metadata.namespace).toBe(route.metadata.namespace);
    }
    for (const plugin of plugins) {
      expect(FORBIDDEN_PLUGINS).not.toContain(plugin.plugin);
      expect(pluginConfigProblems(plugin.plugin, plugin.config)).toEqual([]);
    }
    const byType = (type: string) => plugins.find((p) => p.plugin === type)?.config;
    expect(byType('correlation-id')).toBeDefined();
    expect(byType('request-size-limiting')).toMatchObject({ size_unit: 'kilobytes' });
    expect(['service', 'path']).toContain(byType('rate-limiting').limit_by);
    expect(byType('rate-limiting').policy).toBe('local');
  });

  it('rejects undocumented plugin fields', () => {
    expect(
      pluginConfigProblems('rate-limiting', { minute: 5, limit_by: 'service', polcy: 'local' }),
    ).not.toEqual([]);
    expect(
      pluginConfigProblems('request-size-limiting', { allowed_payload_size: 64, size_unit: 'kb' }),
    ).not.toEqual([]);
  });
});

describe('the migration Job', () => {
  const job = one('Job', 'batch/');
  const pod = job.spec.template.spec;
  const migrate = pod.containers[0];

  it('runs the image’s migration entry with the Service’s image, account and settings', () => {
    expect(migrate.command).toEqual(['node', 'dist/migrate.cjs']);
    expect(migrate.image).toBe(container.image);
    expect(pod.serviceAccountName).toBe(ksvc.spec.template.spec.serviceAccountName);
    expect(migrate.envFrom).toEqual(container.envFrom);
    expect(migrate.env).toEqual(container.env);
    expect(migrate.securityContext).toEqual(container.securityContext);
    expect(pod.restartPolicy).toBe('Never');
  });

  it('is bounded in time and retries, and is cleaned up after it finished', () => {
    expect(job.spec.activeDeadlineSeconds).toBeGreaterThan(0);
    expect(job.spec.backoffLimit).toBeGreaterThan(0);
    expect(job.spec.ttlSecondsAfterFinished).toBeGreaterThan(0);
  });

  it('has settings that load, with the password from Vault', () => {
    const settings = loadSettings(containerEnvironment());
    expect(settings.PGPASSWORD).toBe('');
    expect(settings.PG_PASSWORD_VAULT_PATH).not.toBe('');
    expect(settings.PGSSLMODE).toBe('verify-full');
  });
});

describe('the Knative Eventing base (knative/eventing), file by file', () => {
  const eventing = loadManifests('knative/eventing');
  const problems = modelProblems(eventing.map((m) => m.doc));
  const strictly = itWhen(
    SCHEMAS_PRESENT,
    `upstream schemas not found at ${SCHEMAS_DIR}: knative/eventing not checked for unknown fields`,
  );
  const validators = SCHEMAS_PRESENT ? loadValidators() : undefined;

  it('holds the Broker, its ConfigMap, the SinkBinding, the Trigger and two ksvcs', () => {
    expect(eventing.map((m) => `${m.doc.kind}/${m.doc.metadata.name}`).sort()).toEqual(
      [
        'Broker/coffeebuddy',
        'ConfigMap/kafka-broker-config',
        'Service/coffeebuddy-slack-dead-letter',
        'Service/coffeebuddy-slack-worker',
        'SinkBinding/coffeebuddy-slack',
        'Trigger/coffeebuddy-slack-worker',
      ].sort(),
    );
  });

  it.each(eventing.map((m, i): [string, number] => [titled(m)[0], i]))(
    '%s validates against its npm model',
    (_name, i) => {
      expect(problems[i]).toEqual([]);
    },
  );

  strictly.each(eventing.map(titled))(
    '%s validates strictly against its upstream schema',
    (_name, { doc }) => {
      expect(schemaProblems(validators!, doc)).toEqual([]);
    },
  );

  strictly('the schemas catch a misspelt reference and an unknown metadata field', () => {
    const trigger = structuredClone(
      eventing.find((m) => m.doc.kind === 'Trigger')!.doc,
    ) as Manifest & Obj;
    trigger.spec.subscriber.ref.nmae = trigger.spec.subscriber.ref.name;
    expect(schemaProblems(validators!, trigger).join()).toContain('additional properties');
    const binding = structuredClone(
      eventing.find((m) => m.doc.kind === 'SinkBinding')!.doc,
    ) as Manifest & Obj;
    (binding.metadata as Obj).label = {};
    expect(schemaProblems(validators!, binding).join()).toContain('additional properties');
  });

  it.each(
    eventing
      .filter((m) => m.doc.apiVersion === 'serving.knative.dev/v1')
      .map((m): [string, Obj] => [m.doc.metadata.name, m.doc]),
  )('the ksvc %s passes Knative’s admission rules', (_name, service) => {
    expect(knativeAdmissionProblems(service)).toEqual([]);
  });
});
