import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import {
  exportJWK,
  exportSPKI,
  generateKeyPair,
  SignJWT,
  type CryptoKey,
  type JWK,
  type JWTPayload,
} from 'jose';

/**
 * A stand-in for the Kubernetes API server as a service-account token issuer, on loopback. Its
 * contract, as kube-apiserver serves it (pkg/serviceaccount/openidmetadata.go, and the
 * `system:service-account-issuer-discovery` ClusterRole bound to service accounts):
 * - GET /.well-known/openid-configuration → 200 `{issuer, jwks_uri, response_types_supported,
 *   subject_types_supported, id_token_signing_alg_values_supported}`, jwks_uri being
 *   `<url>/openid/v1/jwks`;
 * - GET /openid/v1/jwks → 200 `{keys: [public JWKs with kid, alg, use: "sig"]}`;
 * - both only with `Authorization: Bearer <the reader's token>`, else 401; other paths 404.
 * It signs tokens as the API server signs a TokenRequest (`iss`, `sub`, `aud`, `iat`, `nbf`, `exp`,
 * `kid` in the header) with its RS256 and ES256 keys, can rotate them, counts key-set reads, and
 * can answer 503, hang, send a key set too large to read, or JSON that is no key set (`notKeys`).
 */
export interface KubeIssuer {
  /** The issuer (`iss`) and base URL: http://127.0.0.1:<port>. */
  readonly url: string;
  /** The Bearer token it requires from whoever reads its keys. */
  readonly readerToken: string;
  /** Reads of /openid/v1/jwks answered 200. */
  readonly jwksFetches: number;
  /** Every request, with whether it carried the reader's token. */
  readonly requests: readonly { path: string; authorized: boolean }[];
  /** The key ids it publishes, newest last. */
  readonly kids: readonly string[];
  mode: 'ok' | 'fail503' | 'hang' | 'huge' | 'notKeys';
  /**
   * A service-account token; `kid` names one of its keys (the newest of that algorithm by default);
   * `withoutKid` leaves the header's `kid` out, as no Kubernetes token does.
   */
  sign(
    claims: JWTPayload,
    options?: { alg?: 'RS256' | 'ES256'; kid?: string; publish?: boolean; withoutKid?: boolean },
  ): Promise<string>;
  /** Adds a new key of `alg` and publishes it; returns its kid. */
  rotate(alg?: 'RS256' | 'ES256'): Promise<string>;
  /** A key pair it does not publish: tokens signed with it carry `kid` but no key matches. */
  unpublishedKid(alg?: 'RS256' | 'ES256'): Promise<string>;
  /** The PEM (SPKI) of a published public key, for forgeries that misuse it. */
  publicKeyPem(kid: string): Promise<string>;
  close(): Promise<void>;
}

interface Key {
  kid: string;
  alg: 'RS256' | 'ES256';
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  jwk: JWK;
  published: boolean;
}

const DISCOVERY_PATH = '/.well-known/openid-configuration';
export const JWKS_PATH = '/openid/v1/jwks';

export async function startKubeIssuer(readerToken = 'reader-sa-token'): Promise<KubeIssuer> {
  const keys: Key[] = [];
  const requests: { path: string; authorized: boolean }[] = [];
  const sockets = new Set<Socket>();
  let fetches = 0;
  let counter = 0;

  const addKey = async (alg: 'RS256' | 'ES256', published: boolean): Promise<string> => {
    const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
    counter += 1;
    const kid = `${alg.toLowerCase()}-key-${counter}`;
    const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
    keys.push({ kid, alg, privateKey, publicKey, jwk, published });
    return kid;
  };
  await addKey('RS256', true);
  await addKey('ES256', true);

  const server = http.createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0] ?? '';
    const authorized = req.headers.authorization === `Bearer ${readerToken}`;
    requests.push({ path, authorized });
    if (path !== DISCOVERY_PATH && path !== JWKS_PATH) {
      res.writeHead(404).end();
      return;
    }
    if (!authorized) {
      res.writeHead(401, { 'Content-Type': 'application/json' }).end('{"kind":"Status"}');
      return;
    }
    if (issuer.mode === 'hang') return;
    if (issuer.mode === 'fail503') {
      res.writeHead(503).end();
      return;
    }
    const json = (body: unknown) => {
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(body));
    };
    if (path === DISCOVERY_PATH) {
      json({
        issuer: issuer.url,
        jwks_uri: `${issuer.url}${JWKS_PATH}`,
        response_types_supported: ['id_token'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256', 'ES256'],
      });
      return;
    }
    if (issuer.mode === 'notKeys') {
      json({ keys: 'none' });
      return;
    }
    if (issuer.mode === 'huge') {
      json({ keys: [], padding: 'x'.repeat(1024 * 1024) });
      return;
    }
    fetches += 1;
    json({ keys: keys.filter((key) => key.published).map((key) => key.jwk) });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const keyOf = (kid: string): Key => {
    const key = keys.find((k) => k.kid === kid);
    if (key === undefined) throw new Error(`no key ${kid}`);
    return key;
  };
  const issuer: KubeIssuer = {
    url: `http://127.0.0.1:${port}`,
    readerToken,
    get jwksFetches() {
      return fetches;
    },
    requests,
    get kids() {
      return keys.filter((key) => key.published).map((key) => key.kid);
    },
    mode: 'ok',
    async sign(claims, options = {}) {
      const alg = options.alg ?? 'RS256';
      const key =
        options.kid === undefined
          ? [...keys].reverse().find((k) => k.alg === alg && k.published)
          : keyOf(options.kid);
      if (key === undefined) throw new Error(`no ${alg} key`);
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ iss: issuer.url, iat: now, nbf: now, exp: now + 600, ...claims })
        .setProtectedHeader({
          alg: key.alg,
          ...(options.withoutKid === true ? {} : { kid: key.kid }),
          typ: 'JWT',
        })
        .sign(key.privateKey);
    },
    rotate: (alg = 'RS256') => addKey(alg, true),
    unpublishedKid: (alg = 'RS256') => addKey(alg, false),
    publicKeyPem: (kid) => exportSPKI(keyOf(kid).publicKey),
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => {
          resolve();
        });
      }),
  };
  return issuer;
}

/** A token of three base64url parts built by hand: for headers jose will not sign (`alg: none`). */
export function unsignedToken(header: object, payload: object, signature = ''): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part(header)}.${part(payload)}.${signature}`;
}
