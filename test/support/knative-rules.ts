/**
 * Rules Knative's admission webhook enforces on a serving.knative.dev/v1 Service that its CRD
 * schema does not express (knative/serving pkg/apis/serving/k8s_validation.go, Knative 1.23).
 */

const RESERVED_PORTS = new Set([8012, 8013, 8022, 8112, 9090, 9091, 8008]);
const RESERVED_ENV = new Set(['PORT', 'K_SERVICE', 'K_CONFIGURATION', 'K_REVISION']);
const PORT_NAMES = new Set(['', 'http1', 'h2c']);
const CONTAINER_FIELDS = new Set([
  'name',
  'args',
  'command',
  'env',
  'envFrom',
  'workingDir',
  'image',
  'imagePullPolicy',
  'livenessProbe',
  'readinessProbe',
  'startupProbe',
  'ports',
  'resources',
  'securityContext',
  'terminationMessagePath',
  'terminationMessagePolicy',
  'volumeMounts',
]);
const SECURITY_CONTEXT_FIELDS = new Set([
  'capabilities',
  'readOnlyRootFilesystem',
  'runAsUser',
  'runAsGroup',
  'runAsNonRoot',
  'allowPrivilegeEscalation',
  'seccompProfile',
  'privileged',
]);
const PROBE_HANDLERS = ['httpGet', 'tcpSocket', 'exec', 'grpc'];

type Obj = Record<string, unknown>;
const obj = (value: unknown): Obj =>
  value !== null && typeof value === 'object' ? (value as Obj) : {};
const list = (value: unknown): Obj[] => (Array.isArray(value) ? value.map(obj) : []);

function probeProblems(name: string, probe: unknown, aggressiveAllowed: boolean): string[] {
  if (probe === undefined) return [];
  const p = obj(probe);
  const problems: string[] = [];
  const handlers = PROBE_HANDLERS.filter((h) => p[h] !== undefined);
  if (handlers.length !== 1)
    problems.push(`${name}: needs exactly one handler, has ${handlers.length}`);
  for (const h of handlers) {
    if (obj(p[h]).port !== undefined && name !== 'startupProbe') {
      problems.push(`${name}: must not set a port (Knative fills in the user port)`);
    }
  }
  const period = p.periodSeconds;
  if (aggressiveAllowed && (period === undefined || period === 0)) {
    for (const field of ['timeoutSeconds', 'failureThreshold']) {
      if (p[field] !== undefined)
        problems.push(`${name}: ${field} is not allowed without periodSeconds`);
    }
  }
  return problems;
}

/** Mount paths Knative refuses (reservedPaths; older releases also refused /tmp, /var, /var/log). */
const RESERVED_MOUNT_PATHS = new Set(['/', '/dev', '/dev/log']);
/**
 * Volume sources a ksvc may use without a feature flag (emptyDir is on by default); only emptyDir
 * (or a flagged PVC) may be mounted writable: "volume mount should be readOnly for this type".
 */
const VOLUME_SOURCES = ['secret', 'configMap', 'projected', 'emptyDir'];
const PROJECTION_SOURCES = ['secret', 'configMap', 'serviceAccountToken', 'downwardAPI'];

function volumeProblems(podSpec: Obj, containers: Obj[]): string[] {
  const problems: string[] = [];
  const volumes = new Map(list(podSpec.volumes).map((v) => [String(v.name), v]));
  const mounted = new Set(containers.flatMap((c) => list(c.volumeMounts).map((m) => m.name)));
  for (const [name, volume] of volumes) {
    const sources = Object.keys(volume).filter((k) => k !== 'name');
    if (sources.length !== 1 || !VOLUME_SOURCES.includes(sources[0]!)) {
      problems.push(`volume ${name}: one of ${VOLUME_SOURCES.join(', ')} (others need a flag)`);
    }
    if (!mounted.has(name)) problems.push(`volume ${name} is not mounted`);
    for (const source of list(obj(volume.projected).sources)) {
      const kinds = Object.keys(source);
      if (kinds.length !== 1 || !PROJECTION_SOURCES.includes(kinds[0]!)) {
        problems.push(`volume ${name}: a projection is one of ${PROJECTION_SOURCES.join(', ')}`);
      }
      if (source.serviceAccountToken !== undefined && !obj(source.serviceAccountToken).path) {
        problems.push(`volume ${name}: serviceAccountToken needs a path`);
      }
    }
  }
  for (const mount of containers.flatMap((c) => list(c.volumeMounts))) {
    const volume = volumes.get(String(mount.name));
    if (volume === undefined) problems.push(`volumeMount ${String(mount.name)} has no volume`);
    else if (volume.emptyDir === undefined && mount.readOnly !== true) {
      problems.push(
        `volumeMount ${String(mount.name)} must be readOnly (only emptyDir is writable)`,
      );
    }
    const where = String(mount.mountPath).replace(/\/+$/, '') || '/';
    if (RESERVED_MOUNT_PATHS.has(where)) problems.push(`mountPath ${where} is reserved`);
  }
  return problems;
}

export function knativeAdmissionProblems(service: Obj): string[] {
  const problems: string[] = [];
  const template = obj(obj(service.spec).template);
  const podSpec = obj(template.spec);
  for (const [where, annotations] of [
    ['metadata.annotations', obj(obj(service.metadata).annotations)],
    ['spec.template.metadata.annotations', obj(obj(template.metadata).annotations)],
  ] as const) {
    for (const [key, value] of Object.entries(annotations)) {
      if (typeof value !== 'string') problems.push(`${where}.${key}: must be a string`);
    }
  }
  if (podSpec.terminationGracePeriodSeconds !== undefined) {
    problems.push(
      'terminationGracePeriodSeconds is not allowed (Knative sets it from timeoutSeconds)',
    );
  }
  if (podSpec.securityContext !== undefined)
    problems.push('pod securityContext needs a feature flag');
  const timeout = podSpec.timeoutSeconds;
  if (typeof timeout === 'number' && (timeout < 30 || timeout > 600)) {
    problems.push('timeoutSeconds must be between 30 (queue-proxy drain) and 600');
  }
  const containers = list(podSpec.containers);
  if (containers.length !== 1)
    problems.push(`needs exactly one container, has ${containers.length}`);
  problems.push(...volumeProblems(podSpec, containers));
  for (const container of containers) {
    for (const field of Object.keys(container)) {
      if (!CONTAINER_FIELDS.has(field)) problems.push(`container field ${field} is not allowed`);
    }
    const ports = list(container.ports);
    if (ports.length !== 1) problems.push(`needs exactly one container port, has ${ports.length}`);
    for (const port of ports) {
      const portName = typeof port.name === 'string' ? port.name : '';
      if (!PORT_NAMES.has(portName)) problems.push(`port name ${portName} is not "", http1 or h2c`);
      if (port.protocol !== undefined && port.protocol !== 'TCP')
        problems.push('port protocol must be TCP');
      if (port.hostPort !== undefined) problems.push('hostPort is not allowed');
      if (RESERVED_PORTS.has(Number(port.containerPort)))
        problems.push(`port ${String(port.containerPort)} is reserved`);
    }
    for (const variable of list(container.env)) {
      if (RESERVED_ENV.has(String(variable.name)))
        problems.push(`env ${String(variable.name)} is reserved`);
    }
    for (const field of Object.keys(obj(container.securityContext))) {
      if (!SECURITY_CONTEXT_FIELDS.has(field))
        problems.push(`securityContext.${field} is not allowed`);
    }
    if (obj(container.securityContext).privileged === true)
      problems.push('privileged must be false');
    problems.push(
      ...probeProblems('readinessProbe', container.readinessProbe, true),
      ...probeProblems('livenessProbe', container.livenessProbe, false),
      ...probeProblems('startupProbe', container.startupProbe, false),
    );
  }
  return problems;
}
