// Validates Kubernetes manifests against the npm `kubernetes-models` packages, which are ESM-only:
// jest's CommonJS runtime cannot load them, so tests run this script in a child process.
// Input on stdin: a JSON array of manifests. Output on stdout: a JSON array, one list of problems
// per manifest. The models check types and required fields; they do not reject unknown fields.
import {
  Gateway,
  GatewayClass,
  HTTPRoute,
} from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1';
import { Broker, Trigger } from '@kubernetes-models/knative/eventing.knative.dev/v1';
import { Service as KnativeService } from '@kubernetes-models/knative/serving.knative.dev/v1';
import { SinkBinding } from '@kubernetes-models/knative/sources.knative.dev/v1';
import {
  PodMonitor,
  PrometheusRule,
} from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { Job } from 'kubernetes-models/batch/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { ConfigMap, Service, ServiceAccount } from 'kubernetes-models/v1';

const MODELS = {
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'serving.knative.dev/v1/Service': KnativeService,
  'eventing.knative.dev/v1/Broker': Broker,
  'eventing.knative.dev/v1/Trigger': Trigger,
  'sources.knative.dev/v1/SinkBinding': SinkBinding,
  'gateway.networking.k8s.io/v1/HTTPRoute': HTTPRoute,
  'gateway.networking.k8s.io/v1/Gateway': Gateway,
  'gateway.networking.k8s.io/v1/GatewayClass': GatewayClass,
  'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule,
  'monitoring.coreos.com/v1/PodMonitor': PodMonitor,
  'batch/v1/Job': Job,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
};

/**
 * Knative's webhook fills in the user port on readiness and liveness probes that omit it (as they
 * should); the generated Kubernetes Probe type requires it. Validate what Knative admits.
 */
function withKnativeDefaults(doc) {
  const copy = structuredClone(doc);
  for (const container of copy.spec?.template?.spec?.containers ?? []) {
    const port = container.ports?.[0]?.containerPort ?? 8080;
    for (const probe of [container.readinessProbe, container.livenessProbe]) {
      if (probe?.httpGet !== undefined && probe.httpGet.port === undefined)
        probe.httpGet.port = port;
    }
  }
  return copy;
}

/**
 * The generated SinkBinding model requires `status` (its Go field has no omitempty); the API server
 * does not: the controller writes it. Validate what is applied.
 */
function withoutStatus(doc) {
  return doc.status === undefined ? { ...doc, status: {} } : doc;
}

function problems(doc) {
  const key = `${doc?.apiVersion}/${doc?.kind}`;
  const Model = MODELS[key];
  if (Model === undefined) return [`no model for ${key}`];
  const input =
    Model === KnativeService
      ? withKnativeDefaults(doc)
      : Model === SinkBinding
        ? withoutStatus(doc)
        : doc;
  try {
    new Model(input).validate();
    return [];
  } catch (error) {
    return String(error.message).split(', ');
  }
}

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => (input += chunk));
process.stdin.on('end', () => {
  process.stdout.write(JSON.stringify(JSON.parse(input).map(problems)));
});
