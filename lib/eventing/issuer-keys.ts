import http from 'node:http';
import type https from 'node:https';
import { readTextFile } from '../read-file';

/** Where and how an OpenID issuer's keys are read (the cluster's API server, by default). */
export interface IssuerKeysSource {
  /** The issuer's URL: its discovery document is `<issuer>/.well-known/openid-configuration`. */
  issuer: string;
  /** The key set's URL; empty to take `jwks_uri` from the discovery document. */
  jwksUrl: string;
  /** A token file sent as `Authorization: Bearer` (the pod's service-account token); empty for none. */
  tokenFile: string;
  /** CA certificates the issuer's certificate is checked against; empty for Node's own. */
  caFile: string;
  /** Whether every URL must be https (production): the Bearer token is never sent in clear there. */
  httpsOnly: boolean;
  /** Bounds each answer's body. */
  maxBytes: number;
}

/** The keys could not be read: the issuer unreachable, slow, refusing, or its answer unusable. */
export class KeysUnavailable extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeysUnavailable';
  }
}

/** The issuer's key set (JWKS) as JSON: discovery first unless the key set's URL is set. */
export async function readIssuerKeys(
  source: IssuerKeysSource,
  signal: AbortSignal,
): Promise<unknown> {
  // Read on every fetch: the kubelet rotates the token file, and fetches are rare.
  const [token, ca] = await Promise.all([
    source.tokenFile === '' ? undefined : readText(source.tokenFile, 'token file'),
    source.caFile === '' ? undefined : readText(source.caFile, 'CA file'),
  ]);
  const get = (url: string) => getJson(url, { token: token?.trim(), ca, signal, ...source });
  let jwksUrl = source.jwksUrl;
  if (jwksUrl === '') {
    const discoveryUrl = `${source.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
    const discovery = await get(discoveryUrl);
    const document = (discovery ?? {}) as { issuer?: unknown; jwks_uri?: unknown };
    if (document.issuer !== source.issuer) {
      throw new KeysUnavailable('the discovery document names another issuer');
    }
    if (typeof document.jwks_uri !== 'string') {
      throw new KeysUnavailable('the discovery document has no jwks_uri');
    }
    jwksUrl = document.jwks_uri;
  }
  return get(jwksUrl);
}

async function readText(file: string, what: string): Promise<string> {
  try {
    return await readTextFile(file);
  } catch (error) {
    throw new KeysUnavailable(`cannot read the ${what}: ${(error as NodeJS.ErrnoException).code}`);
  }
}

/** One GET answered 200 with JSON within `maxBytes`; anything else is KeysUnavailable. */
function getJson(
  address: string,
  options: {
    token: string | undefined;
    ca: string | undefined;
    signal: AbortSignal;
    httpsOnly: boolean;
    maxBytes: number;
  },
): Promise<unknown> {
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    return Promise.reject(new KeysUnavailable('a key URL is not a URL'));
  }
  const secure = url.protocol === 'https:';
  if (!secure && (options.httpsOnly || url.protocol !== 'http:')) {
    return Promise.reject(new KeysUnavailable(`${url.origin} is not https`));
  }
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (options.token !== undefined && options.token !== '') {
    headers.Authorization = `Bearer ${options.token}`;
  }
  return new Promise((resolve, reject) => {
    const fail = (message: string) => {
      reject(new KeysUnavailable(`${url.origin}${url.pathname}: ${message}`));
    };
    const request = (
      secure
        ? // Loaded only for an https issuer: TLS costs every process that loads it.
          // eslint-disable-next-line @typescript-eslint/no-require-imports
          (require('node:https') as typeof https)
        : http
    ).request(url, {
      // Stryker disable next-line StringLiteral: an empty method is Node's default, GET
      method: 'GET',
      headers,
      signal: options.signal,
      agent: false,
      // Stryker disable next-line ConditionalExpression,LogicalOperator: http ignores ca; ca: undefined is Node's default
      ...(secure && options.ca !== undefined ? { ca: options.ca } : {}),
    });
    request.on('error', (error: NodeJS.ErrnoException) => {
      fail(error.name === 'AbortError' ? 'timed out' : (error.code ?? error.name));
    });
    request.on('response', (response) => {
      if (response.statusCode !== 200) {
        response.resume();
        fail(`answered ${response.statusCode ?? 0}`);
        return;
      }
      response.on('error', (error: NodeJS.ErrnoException) => {
        fail(error.code ?? error.name);
      });
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > options.maxBytes) {
          request.destroy();
          fail(`answer over ${options.maxBytes} bytes`);
          return;
        }
        chunks.push(chunk);
      });
      response.on('end', () => {
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch {
          fail('answer is not JSON');
        }
      });
    });
    request.end();
  });
}
