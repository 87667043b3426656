import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import Ajv, { type ValidateFunction } from 'ajv';
import { parseAllDocuments } from 'yaml';
import { REPO_ROOT } from '../../testing/process';

/** The upstream schemas laid beside the repository (../shared/schemas), or SCHEMAS_DIR. */
export const SCHEMAS_DIR = path.resolve(
  process.env.SCHEMAS_DIR ?? path.join(REPO_ROOT, '..', 'shared', 'schemas'),
);

export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, unknown>;
    annotations?: Record<string, unknown>;
  };
  [field: string]: unknown;
}

export interface LoadedManifest {
  file: string;
  doc: Manifest;
}

/** kustomize's own files in a folder of manifests: not manifests themselves. */
const KUSTOMIZE_FILES = ['kustomization.yaml', 'kustomizeconfig.yaml'];

/** Every YAML document under the given folders of the repository, failing on any parse error. */
export function loadManifests(...folders: string[]): LoadedManifest[] {
  const loaded: LoadedManifest[] = [];
  for (const folder of folders) {
    const dir = path.join(REPO_ROOT, folder);
    for (const name of fs
      .readdirSync(dir)
      .filter((f) => /\.ya?ml$/.test(f) && !KUSTOMIZE_FILES.includes(f))
      .sort()) {
      const file = path.join(folder, name);
      for (const document of parseAllDocuments(fs.readFileSync(path.join(dir, name), 'utf8'))) {
        if (document.errors.length > 0) {
          throw new Error(`${file}: ${document.errors.map((e) => e.message).join('; ')}`);
        }
        const doc = document.toJS() as Manifest | null;
        if (doc !== null) loaded.push({ file, doc });
      }
    }
  }
  return loaded;
}

export interface Validators {
  get(apiVersionKind: string): ValidateFunction | undefined;
}

const gvk = (apiVersion: string, kind: string) => `${apiVersion}/${kind}`;

interface CustomResourceDefinition {
  spec: {
    group: string;
    names: { kind: string };
    versions: { name: string; schema: { openAPIV3Schema: object } }[];
  };
}

type JsonSchema = Record<string, unknown> & { properties: Record<string, unknown> };

function readJson(file: string): JsonSchema {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as JsonSchema;
}

/**
 * ConfigMap and ServiceAccount have no file in shared/schemas. Their schemas are built here, as
 * strict as the upstream ones: ObjectMeta is taken from the upstream strict Service schema and the
 * top-level fields are those of the Kubernetes v1.32 API reference.
 */
function coreSchemas(objectMeta: unknown): Record<string, object> {
  const envelope = (kind: string, properties: Record<string, unknown>) => ({
    type: 'object',
    additionalProperties: false,
    required: ['apiVersion', 'kind', 'metadata'],
    properties: {
      apiVersion: { enum: ['v1'] },
      kind: { enum: [kind] },
      metadata: objectMeta,
      ...properties,
    },
  });
  const stringMap = { type: 'object', additionalProperties: { type: 'string' } };
  const reference = {
    type: 'object',
    additionalProperties: false,
    properties: { name: { type: 'string' } },
  };
  return {
    [gvk('v1', 'ConfigMap')]: envelope('ConfigMap', {
      data: stringMap,
      binaryData: stringMap,
      immutable: { type: 'boolean' },
    }),
    [gvk('v1', 'ServiceAccount')]: envelope('ServiceAccount', {
      automountServiceAccountToken: { type: 'boolean' },
      imagePullSecrets: { type: 'array', items: reference },
      secrets: { type: 'array', items: { type: 'object' } },
    }),
  };
}

/**
 * Kubernetes' strict field validation (kubectl --validate=strict) rejects fields a CRD's structural
 * schema does not declare; ajv would let them pass. Every object schema that lists properties and
 * neither declares additionalProperties nor preserves unknown fields is closed here.
 */
function closeObjects(schema: unknown): void {
  if (Array.isArray(schema)) {
    for (const item of schema) closeObjects(item);
    return;
  }
  if (schema === null || typeof schema !== 'object') return;
  const node = schema as Record<string, unknown>;
  if (
    node.properties !== undefined &&
    node.additionalProperties === undefined &&
    node['x-kubernetes-preserve-unknown-fields'] !== true
  ) {
    node.additionalProperties = false;
  }
  for (const value of Object.values(node)) closeObjects(value);
}

/**
 * The API server takes apiVersion, kind and metadata (an ObjectMeta) on every custom resource,
 * whether its CRD schema lists them or not; Knative Eventing's do not.
 */
function withImplicitRootFields(schema: JsonSchema, objectMeta: unknown): void {
  const implicit = {
    apiVersion: { type: 'string' },
    kind: { type: 'string' },
    metadata: objectMeta,
  };
  schema.properties = { ...implicit, ...schema.properties };
}

/** CRD patterns are Go RE2: (?i) is a flag there and a syntax error in JavaScript. */
const goRegExp = Object.assign(
  (pattern: string, flags: string) =>
    pattern.includes('(?i)')
      ? new RegExp(pattern.replaceAll('(?i)', ''), `${flags}i`)
      : new RegExp(pattern, flags),
  { code: 'new RegExp' },
);

/** Whether the upstream schemas are here: on the project's machines and CI, not in a user's clone. */
export const SCHEMAS_PRESENT = fs.existsSync(SCHEMAS_DIR);

/**
 * A strict validator (unknown fields rejected) for every kind the upstream schemas know, keyed by
 * "apiVersion/kind", compiled on first use. Needs SCHEMAS_PRESENT.
 */
export function loadValidators(): Validators {
  if (!SCHEMAS_PRESENT) throw new Error(`schemas not found at ${SCHEMAS_DIR} (set SCHEMAS_DIR)`);
  // The CRD schemas carry x-kubernetes-* keywords ajv does not know: strict mode would refuse them.
  const ajv = new Ajv({ strict: false, allErrors: true, code: { regExp: goRegExp } });
  ajv.addFormat('int32', {
    type: 'number',
    validate: (n: number) => Number.isInteger(n) && Math.abs(n) < 2 ** 31,
  });
  ajv.addFormat('int64', { type: 'number', validate: (n: number) => Number.isInteger(n) });
  ajv.addFormat('date-time', (s: string) => !Number.isNaN(Date.parse(s)));

  const service = readJson(
    path.join(SCHEMAS_DIR, 'kubernetes', 'v1.32.2-standalone-strict-service-v1.json'),
  );
  const ingress = readJson(
    path.join(SCHEMAS_DIR, 'kubernetes', 'v1.32.2-standalone-strict-ingress-networking-v1.json'),
  );
  for (const schema of [service, ingress]) delete schema.$schema;
  const objectMeta = service.properties.metadata;

  const schemas = new Map<string, object>();
  for (const dir of ['knative', 'kong', 'gateway-api', 'prometheus-operator']) {
    for (const name of fs
      .readdirSync(path.join(SCHEMAS_DIR, dir))
      .filter((f) => f.endsWith('.yaml'))) {
      const crd = parseAllDocuments(
        fs.readFileSync(path.join(SCHEMAS_DIR, dir, name), 'utf8'),
      )[0]?.toJS() as CustomResourceDefinition;
      for (const version of crd.spec.versions) {
        const schema = version.schema.openAPIV3Schema as JsonSchema;
        withImplicitRootFields(schema, objectMeta);
        closeObjects(schema);
        schemas.set(gvk(`${crd.spec.group}/${version.name}`, crd.spec.names.kind), schema);
      }
    }
  }
  schemas.set(gvk('v1', 'Service'), service);
  schemas.set(gvk('networking.k8s.io/v1', 'Ingress'), ingress);
  for (const [key, schema] of Object.entries(coreSchemas(objectMeta))) schemas.set(key, schema);

  const compiled = new Map<string, ValidateFunction>();
  return {
    get(key) {
      const schema = schemas.get(key);
      if (schema === undefined) return undefined;
      let validate = compiled.get(key);
      if (validate === undefined) {
        validate = ajv.compile(schema);
        compiled.set(key, validate);
      }
      return validate;
    },
  };
}

/**
 * Kinds with no upstream schema in ../shared/schemas: checked against their npm model only
 * (types and required fields), and by the deploy tests' own rules.
 */
export const KINDS_WITHOUT_UPSTREAM_SCHEMA = [
  'gateway.networking.k8s.io/v1/Gateway',
  'gateway.networking.k8s.io/v1/GatewayClass',
  'monitoring.coreos.com/v1/PodMonitor',
  'batch/v1/Job',
  'networking.k8s.io/v1/NetworkPolicy',
];

/** Parses the output of `kubectl kustomize`. */
export function parseManifests(text: string, source: string): Manifest[] {
  return parseAllDocuments(text).flatMap((document) => {
    if (document.errors.length > 0) {
      throw new Error(`${source}: ${document.errors.map((e) => e.message).join('; ')}`);
    }
    const doc = document.toJS() as Manifest | null;
    return doc === null ? [] : [doc];
  });
}

/** Problems of one document against its schema; a kind without a schema is a problem. */
export function schemaProblems(validators: Validators, doc: Manifest): string[] {
  const validate = validators.get(gvk(doc.apiVersion, doc.kind));
  if (validate === undefined) return [`no schema for ${doc.apiVersion} ${doc.kind}`];
  if (validate(doc)) return [];
  return (validate.errors ?? []).map(
    (e) => `${e.instancePath || '/'} ${e.message ?? 'is invalid'}`,
  );
}

/**
 * Problems of each document against the npm `kubernetes-models` packages (types and required
 * fields, on any machine; unknown fields pass). They are ESM-only, so a child process checks them.
 */
export function modelProblems(docs: readonly Manifest[]): string[][] {
  const result = spawnSync(process.execPath, [path.join(__dirname, 'kube-models.mjs')], {
    cwd: REPO_ROOT,
    input: JSON.stringify(docs),
    encoding: 'utf8',
    timeout: 30_000,
  });
  if (result.status !== 0) throw new Error(`kube-models.mjs failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as string[][];
}

/** The lines of a kustomize env file (KEY=VALUE; blank lines and # comments skipped) as a map. */
export function parseEnvFile(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split('\n').map((l) => l.trim())) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.indexOf('=');
    if (at <= 0) throw new Error(`not KEY=VALUE: ${line}`);
    env[line.slice(0, at)] = line.slice(at + 1);
  }
  return env;
}

interface ConfigMapGenerator {
  name: string;
  namespace?: string;
  behavior?: string;
  envs?: string[];
  literals?: string[];
}

/**
 * The ConfigMaps a folder's kustomization.yaml generates from env files and literals, as they are
 * before kustomize adds the hash to their names: how the settings read without kubectl.
 */
export function generatedConfigMaps(folder: string): Manifest[] {
  const dir = path.join(REPO_ROOT, folder);
  const kustomization = parseAllDocuments(
    fs.readFileSync(path.join(dir, 'kustomization.yaml'), 'utf8'),
  )[0]?.toJS() as { configMapGenerator?: ConfigMapGenerator[] };
  return (kustomization.configMapGenerator ?? [])
    .filter((g) => g.envs !== undefined || g.literals !== undefined)
    .map((generator) => {
      const data: Record<string, string> = {};
      for (const file of generator.envs ?? []) {
        Object.assign(data, parseEnvFile(fs.readFileSync(path.join(dir, file), 'utf8')));
      }
      Object.assign(data, parseEnvFile((generator.literals ?? []).join('\n')));
      return {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: generator.name, namespace: generator.namespace },
        data,
      };
    });
}

type Obj = Record<string, any>;

/**
 * The volume and mount a container reads an absolute file from: the mount whose path holds the
 * file, its volume, and the file's path inside it. Throws when no mount holds the file.
 */
export function mountedFile(
  podSpec: Obj,
  container: Obj,
  file: string,
): { volume: Obj; mount: Obj; relative: string } {
  const mount = ((container.volumeMounts ?? []) as Obj[]).find((m) =>
    file.startsWith(`${String(m.mountPath).replace(/\/+$/, '')}/`),
  );
  if (mount === undefined) throw new Error(`no volume mounted where ${file} is`);
  const volume = ((podSpec.volumes ?? []) as Obj[]).find((v) => v.name === mount.name);
  if (volume === undefined) throw new Error(`volumeMount ${String(mount.name)} has no volume`);
  return {
    volume,
    mount,
    relative: file.slice(String(mount.mountPath).length).replace(/^\/+/, ''),
  };
}

/**
 * The prometheus.io/* annotations the optional component monitoring/annotations adds to every
 * Knative Service (its JSON 6902 patch), by key.
 */
export function scrapeAnnotations(): Record<string, string> {
  const file = path.join(REPO_ROOT, 'monitoring', 'annotations', 'kustomization.yaml');
  const component = parseAllDocuments(fs.readFileSync(file, 'utf8'))[0]?.toJS() as {
    patches: { patch: string }[];
  };
  const annotations: Record<string, string> = {};
  for (const { patch } of component.patches) {
    const ops = parseAllDocuments(patch)[0]?.toJS() as {
      op: string;
      path: string;
      value: string;
    }[];
    for (const op of ops) {
      const prefix = '/spec/template/metadata/annotations/';
      if (op.op === 'add' && op.path.startsWith(prefix)) {
        annotations[op.path.slice(prefix.length).replaceAll('~1', '/').replaceAll('~0', '~')] =
          op.value;
      }
    }
  }
  return annotations;
}
