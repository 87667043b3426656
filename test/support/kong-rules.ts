import Ajv from 'ajv';

/** Plugins that must never sit on a Slack route (they rewrite bodies or refuse Slack's agent). */
export const FORBIDDEN_PLUGINS = ['request-transformer', 'response-transformer', 'bot-detection'];

const positive = { type: 'number', exclusiveMinimum: 0 };

/** The config fields Kong documents for the plugins CoffeeBuddy uses (Kong Gateway 3.x). */
const PLUGIN_CONFIG_SCHEMAS: Record<string, object> = {
  'correlation-id': {
    type: 'object',
    additionalProperties: false,
    properties: {
      header_name: { type: 'string', minLength: 1 },
      generator: { enum: ['uuid', 'uuid#counter', 'tracker'] },
      echo_downstream: { type: 'boolean' },
    },
  },
  'request-size-limiting': {
    type: 'object',
    additionalProperties: false,
    properties: {
      allowed_payload_size: { type: 'integer', minimum: 1 },
      size_unit: { enum: ['megabytes', 'kilobytes', 'bytes'] },
      require_content_length: { type: 'boolean' },
    },
  },
  'rate-limiting': {
    type: 'object',
    additionalProperties: false,
    anyOf: ['second', 'minute', 'hour', 'day', 'month', 'year'].map((p) => ({ required: [p] })),
    properties: {
      second: positive,
      minute: positive,
      hour: positive,
      day: positive,
      month: positive,
      year: positive,
      limit_by: {
        enum: ['consumer', 'credential', 'ip', 'service', 'header', 'path', 'consumer-group'],
      },
      header_name: { type: 'string' },
      path: { type: 'string' },
      policy: { enum: ['local', 'cluster', 'redis'] },
      fault_tolerant: { type: 'boolean' },
      hide_client_headers: { type: 'boolean' },
      error_code: { type: 'number' },
      error_message: { type: 'string' },
      sync_rate: { type: 'number' },
    },
  },
};

const ajv = new Ajv({ allErrors: true });

/** Problems of a KongPlugin's config against Kong's documented fields for that plugin. */
export function pluginConfigProblems(plugin: string, config: unknown): string[] {
  const schema = PLUGIN_CONFIG_SCHEMAS[plugin];
  if (schema === undefined) return [`plugin ${plugin} has no documented schema here`];
  const validate = ajv.compile(schema);
  if (validate(config)) return [];
  return (validate.errors ?? []).map((e) => `${plugin}.config${e.instancePath} ${e.message ?? ''}`);
}

export interface HttpRouteMatch {
  method?: string;
  path?: { type?: string; value?: string };
}

/** Gateway API path matching: PathPrefix matches whole segments; Exact the whole path. */
export function routeMatches(match: HttpRouteMatch, method: string, requestPath: string): boolean {
  if (match.method !== undefined && match.method !== method) return false;
  const type = match.path?.type ?? 'PathPrefix';
  const value = match.path?.value ?? '/';
  if (type === 'Exact') return requestPath === value;
  if (type !== 'PathPrefix') return true; // RegularExpression: treat as matching, to be safe
  const prefix = value.replace(/\/+$/, '');
  return prefix === '' || requestPath === prefix || requestPath.startsWith(`${prefix}/`);
}
