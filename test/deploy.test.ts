import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  SETTING_NAMES,
  loadSettings,
  type FunctionTarget,
  type Settings,
} from '../lib/config/settings';
import { IN_FLIGHT_RETRY_AFTER_SECONDS } from '../lib/http/in-flight';
import { backoffMs, isoDurationMs, type BackoffPolicy } from '../testing/deliverer';
import { REPO_ROOT } from '../testing/process';
import { findCommand, itWithCommand } from '../testing/tools';
import { knativeAdmissionProblems } from './support/knative-rules';
import {
  KINDS_WITHOUT_UPSTREAM_SCHEMA,
  SCHEMAS_PRESENT,
  generatedConfigMaps,
  loadManifests,
  loadValidators,
  modelProblems,
  mountedFile,
  parseManifests,
  schemaProblems,
  scrapeAnnotations,
  type Manifest,
} from './support/manifests';

type Obj = Record<string, any>;

/** The deploy bundle as kustomize builds it: every base, and the example overlay. */
const BASES = ['knative', 'knative/eventing', 'kong', 'kong/gateway', 'monitoring'];
const OVERLAY = 'deploy/example';
const withKubectl = itWithCommand('kubectl', 'kubectl 1.32 or newer (kustomize built in)');

/** `kubectl kustomize` of a folder of the repository, or of an absolute folder elsewhere. */
function kustomize(dir: string): Manifest[] {
  const result = spawnSync('kubectl', ['kustomize', path.resolve(REPO_ROOT, dir)], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (result.status !== 0) throw new Error(`kubectl kustomize ${dir}: ${result.stderr}`);
  return parseManifests(result.stdout, dir);
}

/**
 * A copy of the bases and the example overlay in a temporary folder, laid out as in the repository
 * (kustomize refuses absolute paths to bases): what a team's `cp -r deploy/example` starts from.
 * `edit` changes the copy's files; returns the copied overlay's folder.
 */
function overlayCopy(edit: (root: string) => void): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'coffeebuddy-deploy-'));
  for (const dir of ['knative', 'kong', 'monitoring', OVERLAY]) {
    fs.cpSync(path.join(REPO_ROOT, dir), path.join(root, dir), { recursive: true });
  }
  edit(root);
  return path.join(root, OVERLAY);
}

/** Rewrites one file of a copy made by overlayCopy, failing when `from` is not in it. */
function replaceIn(root: string, file: string, from: string, to: string): void {
  const where = path.join(root, file);
  const text = fs.readFileSync(where, 'utf8');
  if (!text.includes(from)) throw new Error(`${file} does not contain ${from}`);
  fs.writeFileSync(where, text.replace(from, to));
}

const copies: string[] = [];
afterAll(() => {
  for (const overlay of copies) {
    fs.rmSync(path.resolve(overlay, '..', '..'), { recursive: true, force: true });
  }
});

/** kustomize's build of an edited copy of the example overlay. */
function kustomizeCopy(edit: (root: string) => void): Manifest[] {
  const overlay = overlayCopy(edit);
  copies.push(overlay);
  return kustomize(overlay);
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

/** Where the PrometheusRule says the runbooks are (each alert's runbook_url before the '#'). */
const runbookBase = (docs: Manifest[]): string =>
  only(docs, 'PrometheusRule', 'coffeebuddy').metadata.annotations['coffeebuddy/runbooks'];

/** The pods of the bundle: every Knative Service's revision template and the migration Job's. */
const podTemplates = (docs: Manifest[]): [string, Obj][] => [
  ...knativeServices(docs).map((s): [string, Obj] => [s.metadata.name, s.spec.template.spec]),
  ...find(docs, 'Job').map((j): [string, Obj] => [j.metadata.name, j.spec.template.spec]),
];

/**
 * The PEM a pod template reads at PGSSLROOTCERT: through the read-only mount holding that path,
 * from the ConfigMap in the bundle its volume names.
 */
function caOf(docs: Manifest[], owner: Obj): string {
  const podSpec: Obj = owner.spec.template.spec;
  const container = podSpec.containers[0];
  const file = loadSettings(environmentOf(docs, owner)).PGSSLROOTCERT;
  const { volume, mount, relative } = mountedFile(podSpec, container, file);
  expect(mount.readOnly).toBe(true);
  const item = volume.configMap.items.find((i: Obj) => i.path === relative);
  return only(docs, 'ConfigMap', volume.configMap.name).data[item.key];
}

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
        'NetworkPolicy',
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
    'the overlay changes the image, the host, the addresses, the CA and the runbooks, each written once',
    () => {
      const base = [
        ...kustomize('knative'),
        ...kustomize('knative/eventing'),
        ...kustomize('kong'),
        ...kustomize('kong/gateway'),
        ...kustomize('monitoring'),
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
        PGHOST: settingsOf(overlay).env.PGHOST!,
        runbooks: runbookBase(overlay),
      };
      expect(values.image).not.toBe(image(base));
      expect(values.image).toMatch(/^[\w.-]+(:\d+)?\/[\w./-]+:[\w.-]+$/);
      expect(values.host).not.toBe(hosts(base)[0]);
      expect(new Set(hosts(overlay))).toEqual(new Set([values.host]));
      expect(values.VAULT_ADDR).not.toBe(settingsOf(base).env.VAULT_ADDR);
      expect(values.ORY_URL).not.toBe(settingsOf(base).env.ORY_URL);
      expect(values.kafka).not.toBe(kafkaServers(base));
      expect(values.kafka).toMatch(/^[\w.-]+:\d+(,[\w.-]+:\d+)*$/);
      expect(values.PGHOST).not.toBe(settingsOf(base).env.PGHOST);
      expect(values.runbooks).not.toBe(runbookBase(base));
      expect(new URL(values.runbooks).protocol).toBe('https:');
      // The CA the overlay gives (its own file) is what the pods are given.
      const ca = caOf(overlay, only(overlay, 'Service', 'coffeebuddy'));
      expect(ca).toBe(fs.readFileSync(path.join(REPO_ROOT, OVERLAY, 'postgres-ca.crt'), 'utf8'));

      // Each value stands in exactly one place of the overlay's files.
      const files = fs
        .readdirSync(path.join(REPO_ROOT, OVERLAY), { recursive: true, withFileTypes: true })
        .filter((f) => f.isFile())
        .map((f) => fs.readFileSync(path.join(f.parentPath, f.name), 'utf8'))
        .join('\n');
      const [imageName] = values.image.split(':');
      for (const value of [
        imageName!,
        values.host,
        values.VAULT_ADDR,
        values.ORY_URL,
        values.kafka,
        values.PGHOST,
        values.runbooks,
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
    },
  );

  withKubectl('one scrape method by default; the annotations only with their component', () => {
    const annotated = (docs: Manifest[]) =>
      knativeServices(docs).map((s) =>
        Object.fromEntries(
          Object.entries(s.spec.template.metadata.annotations as Record<string, string>).filter(
            ([key]) => key.startsWith('prometheus.io/'),
          ),
        ),
      );
    const plain = kustomize(OVERLAY);
    expect(annotated(plain)).toEqual(knativeServices(plain).map(() => ({})));
    expect(find(plain, 'PodMonitor')).toHaveLength(1);

    // An overlay for annotation-based scrapers: their component instead of the monitoring one.
    const withComponent = kustomizeCopy((root) => {
      replaceIn(
        root,
        `${OVERLAY}/kustomization.yaml`,
        '  - monitoring\n',
        '  - ../../monitoring/annotations\n',
      );
    });
    expect(find(withComponent, 'PodMonitor')).toEqual([]);
    const expected = scrapeAnnotations();
    expect(annotated(withComponent)).toEqual(knativeServices(withComponent).map(() => expected));
    const ksvc = only(withComponent, 'Service', 'coffeebuddy');
    expect(expected['prometheus.io/port']).toBe(
      String(ksvc.spec.template.spec.containers[0].ports[0].containerPort),
    );
    expect(expected['prometheus.io/path']).toBe(settingsOf(withComponent).settings.METRICS_PATH);
  });
});

/** The labels kustomize gives every object (`labels`, selectors and templates untouched). */
const COMMON_LABELS = {
  'app.kubernetes.io/name': 'coffeebuddy',
  'app.kubernetes.io/part-of': 'coffeebuddy',
};
/** What docs/deploy.md's first apply selects: what the migration Job needs, and the ingress. */
const FIRST_APPLY = ['runtime', 'migrate'];
const VAULT_ROLE = JSON.parse(
  fs.readFileSync(path.join(REPO_ROOT, 'vault', 'kubernetes-role.json'), 'utf8'),
) as { audience: string; bound_service_account_names: string[] };

describe('the overlay as a platform team applies it', () => {
  const docs = findCommand('kubectl') === undefined ? [] : kustomize(OVERLAY);
  const settingsMap = () => {
    const maps = find(docs, 'ConfigMap').filter((c) =>
      c.metadata.name.startsWith('coffeebuddy-runtime-'),
    );
    expect(maps).toHaveLength(1);
    return maps[0]!;
  };

  withKubectl.each([...BASES, OVERLAY])(
    '%s: every object is labelled with its name, part-of and component',
    (dir) => {
      for (const doc of kustomize(dir)) {
        expect([gvk(doc), doc.metadata.name, doc.metadata.labels]).toEqual([
          gvk(doc),
          doc.metadata.name,
          expect.objectContaining({
            ...COMMON_LABELS,
            'app.kubernetes.io/component': expect.stringMatching(/^[a-z][a-z-]*[a-z]$/),
          }),
        ]);
      }
    },
  );

  withKubectl('the labels leave selectors and pod templates as the files write them', () => {
    const files = loadManifests('knative', 'knative/eventing', 'monitoring', 'kong/gateway')
      .map((m) => m.doc as Obj)
      .filter((d) => 'kind' in d);
    // The Job's name gets the release appended; there is one Job.
    const built = (file: Obj) =>
      file.kind === 'Job' ? only(docs, 'Job') : only(docs, file.kind, file.metadata.name);
    for (const file of files.filter((d) => d.spec?.template !== undefined)) {
      expect([file.metadata.name, built(file).spec.template.metadata?.labels]).toEqual([
        file.metadata.name,
        file.spec.template.metadata?.labels,
      ]);
    }
    const monitor = files.find((d) => d.kind === 'PodMonitor')!;
    expect(only(docs, 'PodMonitor').spec.selector).toEqual(monitor.spec.selector);
    const gateway = files.find((d) => d.kind === 'Gateway')!;
    expect(only(docs, 'Gateway', 'kong').spec.listeners.map((l: Obj) => l.allowedRoutes)).toEqual(
      gateway.spec.listeners.map((l: Obj) => l.allowedRoutes),
    );
  });

  withKubectl('every Service and the Job take their settings from the one hashed ConfigMap', () => {
    const settings = settingsMap();
    expect(settings.metadata.name).toMatch(/^coffeebuddy-runtime-[a-z0-9]{10}$/);
    const pods = podTemplates(docs);
    expect(pods.map(([name]) => name).sort()).toEqual(
      [
        'coffeebuddy',
        'coffeebuddy-slack-worker',
        'coffeebuddy-slack-dead-letter',
        only(docs, 'Job').metadata.name,
      ].sort(),
    );
    for (const [name, pod] of pods) {
      const envFrom = pod.containers[0].envFrom.map((e: Obj) => e.configMapRef.name);
      expect([name, envFrom]).toEqual([name, [settings.metadata.name]]);
      // Every ConfigMap a pod names is in the bundle, under the name kustomize gave it.
      for (const volume of pod.volumes.filter((v: Obj) => v.configMap !== undefined)) {
        expect(find(docs, 'ConfigMap', volume.configMap.name)).toHaveLength(1);
      }
    }
  });

  withKubectl(
    'a changed setting or CA gives its ConfigMap a new name, so every pod template changes',
    () => {
      const templates = (built: Manifest[]) =>
        podTemplates(built).map(([name, pod]) => [name, JSON.stringify(pod)]);
      const configMapNames = (built: Manifest[]) =>
        find(built, 'ConfigMap').map((c) => c.metadata.name as string);
      for (const [file, from, to] of [
        [`${OVERLAY}/settings.env`, 'PGHOST=coffeebuddy-db-rw.', 'PGHOST=coffeebuddy-db2-rw.'],
        ['knative/settings.env', 'LOG_LEVEL=info', 'LOG_LEVEL=debug'],
        [
          `${OVERLAY}/postgres-ca.crt`,
          '-----BEGIN CERTIFICATE-----',
          '# rotated\n-----BEGIN CERTIFICATE-----',
        ],
      ] as const) {
        const changed = kustomizeCopy((root) => {
          replaceIn(root, file, from, to);
        });
        // One ConfigMap was renamed (a new hash) and the others kept their names.
        const gone = configMapNames(docs).filter((n) => !configMapNames(changed).includes(n));
        const added = configMapNames(changed).filter((n) => !configMapNames(docs).includes(n));
        expect([file, gone.length, added.length]).toEqual([file, 1, 1]);
        expect(added[0]!.replace(/-[a-z0-9]{10}$/, '')).toBe(
          gone[0]!.replace(/-[a-z0-9]{10}$/, ''),
        );
        // Every Service's revision template (so Knative makes a new revision) and the Job change,
        // and only by that name.
        const before = templates(docs);
        const after = templates(changed);
        expect(after.map(([name]) => name)).toEqual(before.map(([name]) => name));
        for (let i = 0; i < before.length; i += 1) {
          expect(after[i]![1]).not.toBe(before[i]![1]);
          expect(after[i]![1]!.replaceAll(added[0]!, gone[0]!)).toBe(before[i]![1]);
        }
      }
    },
  );

  withKubectl('every pod verifies PostgreSQL against the overlay’s CA, mounted read-only', () => {
    for (const owner of [...knativeServices(docs), ...find(docs, 'Job')]) {
      const pem = caOf(docs, owner);
      const certificate = new X509Certificate(pem);
      expect([owner.metadata.name, certificate.ca]).toEqual([owner.metadata.name, true]);
      expect(loadSettings(environmentOf(docs, owner)).PGSSLMODE).toBe('verify-full');
    }
  });

  withKubectl('every pod logs in to Vault with a token for Vault’s audience, and no other', () => {
    const account = only(docs, 'ServiceAccount');
    expect(account.automountServiceAccountToken).toBe(false);
    expect(VAULT_ROLE.bound_service_account_names).toEqual([account.metadata.name]);
    for (const owner of [...knativeServices(docs), ...find(docs, 'Job')]) {
      const pod: Obj = owner.spec.template.spec;
      const settings = loadSettings(environmentOf(docs, owner));
      const { volume, mount, relative } = mountedFile(
        pod,
        pod.containers[0],
        settings.VAULT_K8S_JWT_FILE,
      );
      expect([
        owner.metadata.name,
        pod.serviceAccountName,
        pod.automountServiceAccountToken,
      ]).toEqual([owner.metadata.name, account.metadata.name, false]);
      expect(mount.readOnly).toBe(true);
      expect(volume.projected.sources).toEqual([
        {
          serviceAccountToken: {
            audience: VAULT_ROLE.audience,
            expirationSeconds: expect.any(Number),
            path: relative,
          },
        },
      ]);
    }
  });

  withKubectl('the migration Job is named for the image’s tag: a new image is a new Job', () => {
    const name = (built: Manifest[]) => only(built, 'Job').metadata.name as string;
    const tag = (built: Manifest[]) =>
      (only(built, 'Job').spec.template.spec.containers[0].image as string).split(':').at(-1);
    expect(name(docs)).toBe(`coffeebuddy-migrate-${tag(docs)}`);
    const next = kustomizeCopy((root) => {
      replaceIn(root, `${OVERLAY}/kustomization.yaml`, 'newTag: 0.1.0', 'newTag: 0.2.0-rc.1');
    });
    expect(name(next)).toBe('coffeebuddy-migrate-0.2.0-rc.1');
    for (const built of [docs, next]) {
      // A Job's name becomes its pods' job-name label: a label value of at most 63 characters.
      expect(name(built)).toMatch(/^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$/);
      expect(only(built, 'Job').spec.ttlSecondsAfterFinished).toBeUndefined();
      expect(only(built, 'Job').spec.template.spec.containers[0].image).toBe(
        only(built, 'Service', 'coffeebuddy').spec.template.spec.containers[0].image,
      );
    }
  });

  withKubectl('the first apply selects the Job and all it needs, and no Eventing object', () => {
    const first = docs.filter((d) =>
      FIRST_APPLY.includes(String(d.metadata.labels?.['app.kubernetes.io/component'])),
    );
    const job = only(first, 'Job');
    const pod: Obj = job.spec.template.spec;
    expect(only(first, 'ServiceAccount').metadata.name).toBe(pod.serviceAccountName);
    for (const name of [
      ...pod.containers[0].envFrom.map((e: Obj) => e.configMapRef.name),
      ...pod.volumes
        .filter((v: Obj) => v.configMap !== undefined)
        .map((v: Obj) => v.configMap.name),
    ]) {
      expect(find(first, 'ConfigMap', name)).toHaveLength(1);
    }
    const eventing = ['Broker', 'Trigger', 'SinkBinding'];
    expect(first.filter((d) => eventing.includes(d.kind))).toEqual([]);
  });

  withKubectl(
    'docs/deploy.md and the README apply it in the order and with the names it builds',
    () => {
      const job = only(docs, 'Job').metadata.name as string;
      const markers = (text: string) => new Set(text.match(/\(\d\)/g));
      const overlayFiles = fs
        .readdirSync(path.join(REPO_ROOT, OVERLAY), { recursive: true, withFileTypes: true })
        .filter((f) => f.isFile())
        .map((f) => fs.readFileSync(path.join(f.parentPath, f.name), 'utf8'))
        .join('\n');
      for (const doc of ['docs/deploy.md', 'README.md']) {
        const text = fs.readFileSync(path.join(REPO_ROOT, doc), 'utf8');
        const selector = /kubectl apply -k \S+ -l '([^']+)'/.exec(text)?.[1];
        expect([doc, selector]).toEqual([
          doc,
          `app.kubernetes.io/component in (${FIRST_APPLY.join(', ')})`,
        ]);
        expect([doc, /job\/(coffeebuddy-migrate\S*)/.exec(text)?.[1]]).toEqual([doc, job]);
        // Every value the overlay marks is listed, and nothing it does not mark.
        const listed = [...markers(text.slice(text.indexOf('(1)')))].filter((m) =>
          overlayFiles.includes(m),
        );
        expect([doc, listed.sort()]).toEqual([doc, [...markers(overlayFiles)].sort()]);
      }
      // docs/deploy.md's table of Kong's timeouts holds the route's values.
      const deployDoc = fs.readFileSync(path.join(REPO_ROOT, 'docs/deploy.md'), 'utf8');
      const upstream = find(docs, 'Service').find((d) => d.spec?.type === 'ExternalName')!;
      for (const [key, value] of Object.entries(
        upstream.metadata.annotations as Record<string, string>,
      )) {
        if (!/^konghq\.com\/(retries|\w+-timeout)$/.test(key)) continue;
        expect(deployDoc).toMatch(
          new RegExp(`\\| \`${key.replace('.', '\\.')}\` +\\| \`${value}\` +\\|`),
        );
      }
    },
  );

  withKubectl('Kong neither retries nor waits past Slack’s 3 s in the built overlay', () => {
    const upstream = find(docs, 'Service').find((d) => d.spec?.type === 'ExternalName')!;
    const annotations = upstream.metadata.annotations as Record<string, string>;
    expect(annotations['konghq.com/retries']).toBe('0');
    const total = ['connect-timeout', 'write-timeout', 'read-timeout']
      .map((key) => Number(annotations[`konghq.com/${key}`]))
      .reduce((a, b) => a + b, 0);
    expect(total).toBeLessThanOrEqual(3000);
  });

  withKubectl('every alert’s runbook_url points at the overlay’s runbooks, same section', () => {
    const file = parseManifests(
      fs.readFileSync(path.join(REPO_ROOT, 'monitoring', 'prometheusrule.yaml'), 'utf8'),
      'monitoring/prometheusrule.yaml',
    )[0] as Obj;
    const urls = (rule: Obj): string[] =>
      rule.spec.groups.flatMap((g: Obj) =>
        g.rules
          .filter((r: Obj) => r.alert !== undefined)
          .map((r: Obj) => r.annotations.runbook_url),
      );
    const section = (url: string) => url.slice(url.indexOf('#'));
    const built = urls(only(docs, 'PrometheusRule'));
    expect(built.length).toBeGreaterThan(0);
    expect(built).toEqual(urls(file).map((url) => `${runbookBase(docs)}${section(url)}`));
  });
});

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
    'delivery retries with linear backoff, each attempt bounded, then dead-letters',
    () => {
      const { delivery } = trigger().spec;
      expect(delivery.retry).toBeGreaterThanOrEqual(3);
      // Exponential waits leave too few attempts inside a burst (docs/deploy.md).
      expect(delivery.backoffPolicy).toBe('linear');
      expect(isoDurationMs(delivery.backoffDelay)).toBeGreaterThan(0);
      // The worker's Retry-After is honoured, not cut.
      expect(isoDurationMs(delivery.retryAfterMax)).toBeGreaterThanOrEqual(
        IN_FLIGHT_RETRY_AFTER_SECONDS * 1000,
      );
      // queue-proxy must not end an attempt before the dispatcher's timeout does.
      expect(worker().spec.template.spec.timeoutSeconds * 1000).toBeGreaterThan(
        isoDurationMs(delivery.timeout),
      );
      expect(deadLetter().metadata.namespace).toBe(trigger().metadata.namespace);
    },
  );

  withKubectl('a rate-limited worker’s Retry-After is honoured, up to a minute', () => {
    const { delivery } = trigger().spec;
    // Slack's Retry-After for chat.postMessage is seconds to a minute; the worker passes it on.
    expect(isoDurationMs(delivery.retryAfterMax)).toBe(60_000);
  });

  withKubectl(
    'an attempt outlasts a handler, and the retries outlast the lease of a dead worker’s claim',
    () => {
      const { delivery } = trigger().spec;
      const settings = loadSettings(environmentOf(docs, worker()));
      const handlerMs = settings.SLACK_HANDLER_TIMEOUT_MS;
      expect(isoDurationMs(delivery.timeout)).toBeGreaterThan(handlerMs);
      const spec = {
        backoffPolicy: delivery.backoffPolicy as BackoffPolicy,
        backoffDelayMs: isoDurationMs(delivery.backoffDelay),
      };
      const waitsMs = Array.from({ length: delivery.retry }, (_, n) => backoffMs(spec, n + 1));
      const budgetMs = waitsMs.reduce((a, b) => a + b, 0);
      expect(budgetMs).toBeGreaterThan(settings.SLACK_WORK_LEASE_MS);
      // Twice the burst on one pod (600 deliveries of a 3 s handler, EVENT_MAX_IN_FLIGHT
      // at a time): refused 429 meanwhile, none runs out of retries (test/system/event-flood).
      expect(budgetMs).toBeGreaterThan((2 * 600 * 3000) / settings.EVENT_MAX_IN_FLIGHT);
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
        for (const field of ['serviceAccountName', 'automountServiceAccountToken']) {
          expect([field, podSpec(ksvc)[field]]).toEqual([field, podSpec(ingress())[field]]);
        }
        // The ingress's volumes, and one of their own: the issuer's token and CA (below).
        const own = (list: Obj[]) => list.filter((entry: Obj) => entry.name !== 'issuer');
        expect(own(podSpec(ksvc).volumes)).toEqual(podSpec(ingress()).volumes);
        expect(own(container(ksvc).volumeMounts)).toEqual(container(ingress()).volumeMounts);
        for (const field of [
          'image',
          'ports',
          'envFrom',
          'resources',
          'readinessProbe',
          'livenessProbe',
          'securityContext',
        ]) {
          expect([field, container(ksvc)[field]]).toEqual([field, container(ingress())[field]]);
        }
        // A bounded concurrency, and a grace period that leaves the drain its whole timeout.
        expect(podSpec(ksvc).containerConcurrency).toBeGreaterThan(0);
        const settings = loadSettings(environmentOf(docs, ksvc));
        expect(podSpec(ksvc).timeoutSeconds * 1000 - QUEUE_PROXY_DRAIN_MS).toBeGreaterThanOrEqual(
          settings.SHUTDOWN_TIMEOUT_MS,
        );
        expect(settings.PG_PASSWORD_VAULT_PATH).not.toBe('');
        // What queue-proxy lets through is never refused 429 by the app.
        expect(settings.EVENT_MAX_IN_FLIGHT).toBeGreaterThanOrEqual(
          podSpec(ksvc).containerConcurrency,
        );
      }
      // Never scaled to zero: the dead-letter alert counts from a series already scraped at 0.
      expect(Number(annotation(deadLetter(), 'min-scale'))).toBeGreaterThanOrEqual(1);
      expect(Number(annotation(worker(), 'min-scale'))).toBeGreaterThanOrEqual(1);
    },
  );

  withKubectl(
    'the event ksvcs read the cluster issuer’s keys with a projected API-server token and the cluster CA',
    () => {
      for (const ksvc of [worker(), deadLetter()]) {
        const pod: Obj = ksvc.spec.template.spec;
        const settings = loadSettings(environmentOf(docs, ksvc));
        const token = mountedFile(pod, pod.containers[0], settings.EVENTING_OIDC_TOKEN_FILE);
        const ca = mountedFile(pod, pod.containers[0], settings.EVENTING_OIDC_CA_FILE);
        expect([ksvc.metadata.name, token.mount.readOnly, ca.mount.readOnly]).toEqual([
          ksvc.metadata.name,
          true,
          true,
        ]);
        // No audience: the API server's own, which its discovery and JWKS endpoints take.
        expect(token.volume.projected.sources).toContainEqual({
          serviceAccountToken: { expirationSeconds: expect.any(Number), path: token.relative },
        });
        expect(ca.volume.projected.sources).toContainEqual({
          configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: ca.relative }] },
        });
      }
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

  withKubectl(
    'the Trigger names each destination’s OIDC audience, the one its ksvc requires',
    () => {
      const audienceOf = (ksvc: Obj) =>
        loadSettings(environmentOf(docs, ksvc)).EVENTING_OIDC_AUDIENCE;
      const { subscriber, delivery } = trigger().spec;
      expect(audienceOf(worker())).toBe(subscriber.audience);
      expect(audienceOf(deadLetter())).toBe(delivery.deadLetterSink.audience);
      expect(subscriber.audience).not.toBe(delivery.deadLetterSink.audience);
      for (const audience of [subscriber.audience, delivery.deadLetterSink.audience]) {
        expect(audience).not.toBe('none');
        expect(audience).toMatch(/^[\w.-]+$/);
      }
    },
  );

  withKubectl(
    'the NetworkPolicy admits only Knative’s data plane and Prometheus to the event pods',
    () => {
      const policy = only(docs, 'NetworkPolicy', 'coffeebuddy-event-functions');
      expect(policy.metadata.namespace).toBe(worker().metadata.namespace);
      // Knative labels a ksvc's pods with serving.knative.dev/service: <ksvc name>.
      expect(policy.spec.podSelector).toEqual({
        matchExpressions: [
          {
            key: 'serving.knative.dev/service',
            operator: 'In',
            values: [worker().metadata.name, deadLetter().metadata.name],
          },
        ],
      });
      expect(policy.spec.policyTypes).toEqual(['Ingress']);
      const sources = (policy.spec.ingress as Obj[]).map((rule) => ({
        namespaces: (rule.from as Obj[]).map((peer) => {
          // Whole namespaces, by the label the API server sets: no pod or IP block peers.
          expect(Object.keys(peer)).toEqual(['namespaceSelector']);
          return peer.namespaceSelector.matchLabels['kubernetes.io/metadata.name'] as string;
        }),
        ports: (rule.ports as Obj[]).map((p) => `${p.protocol}/${p.port}`),
      }));
      expect(sources).toEqual([
        {
          namespaces: ['knative-eventing', 'knative-serving', 'kourier-system'],
          ports: ['TCP/8012', 'TCP/8013', 'TCP/9090', 'TCP/9091'],
        },
        // The app's own port, which the ksvcs declare and Prometheus scrapes.
        {
          namespaces: ['monitoring'],
          ports: [`TCP/${worker().spec.template.spec.containers[0].ports[0].containerPort}`],
        },
      ]);
      // The ingress is not selected: Kong reaches it.
      expect(
        ingress().spec.template.metadata.labels?.['serving.knative.dev/service'],
      ).toBeUndefined();
    },
  );

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
  const docs = [...loadManifests('knative').map((m) => m.doc), ...generatedConfigMaps('knative')];
  const { settings } = settingsOf(docs);
  const account = only(docs, 'ServiceAccount');
  const script = read('configure.sh');
  const role = JSON.parse(read('kubernetes-role.json'));

  it('the policy reads exactly the KV v2 paths the app reads, and nothing else', () => {
    const blocks = [...read('policy.hcl').matchAll(/path\s+"([^"]+)"\s*\{([^}]*)\}/g)];
    // The bot token lives beside the signing secret: the same path, another key.
    expect(settings.SLACK_BOT_TOKEN_VAULT_PATH).toBe(settings.SLACK_SIGNING_SECRET_VAULT_PATH);
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
      `vault kv patch ${settings.VAULT_KV_MOUNT}/${settings.SLACK_BOT_TOKEN_VAULT_PATH} ${settings.SLACK_BOT_TOKEN_VAULT_KEY}=-`,
    );
    expect(script).toContain(
      `vault kv put ${settings.VAULT_KV_MOUNT}/${settings.PG_PASSWORD_VAULT_PATH} ${settings.PG_PASSWORD_VAULT_KEY}=-`,
    );
    expect(spawnSync('bash', ['-n', path.join(REPO_ROOT, 'vault', 'configure.sh')]).status).toBe(0);
  });
});
