import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  KeysUnavailable,
  readIssuerKeys,
  type IssuerKeysSource,
} from '../../lib/eventing/issuer-keys';
import { freePort } from '../../testing/process';
import { findCommand, itWithCommand } from '../../testing/tools';

/**
 * readIssuerKeys against a loopback issuer of the test's own (the Kubernetes stand-in's contract is
 * covered through SenderIdentity): what is asked for, with which headers, and every way an answer
 * is refused, each a KeysUnavailable saying why.
 */

interface Seen {
  path: string;
  authorization: string | undefined;
  accept: string | undefined;
}

/** An answer: a status (200 unless said) and JSON text, or written by the test. */
type Route = { status?: number; body: string } | ((res: http.ServerResponse) => void);

const servers: (http.Server | https.Server)[] = [];
afterEach(async () => {
  await Promise.all(
    servers.splice(0).map((server) => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    }),
  );
});

/** Answers each path from `routes` (404 elsewhere) over http, or https given a key and certificate; records every request. */
async function issuerServer(
  routes: (base: string) => Record<string, Route>,
  tlsContext?: { key: Buffer; cert: Buffer },
) {
  const seen: Seen[] = [];
  let table: Record<string, Route> = {};
  const handler: http.RequestListener = (req, res) => {
    seen.push({
      path: req.url ?? '',
      authorization: req.headers.authorization,
      accept: req.headers.accept,
    });
    const route = table[req.url ?? ''];
    if (route === undefined) {
      res.writeHead(404).end();
    } else if (typeof route === 'function') {
      route(res);
    } else {
      res.writeHead(route.status ?? 200, { 'Content-Type': 'application/json' }).end(route.body);
    }
  };
  const server =
    tlsContext === undefined ? http.createServer(handler) : https.createServer(tlsContext, handler);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const base = `${tlsContext === undefined ? 'http' : 'https'}://127.0.0.1:${port}`;
  table = routes(base);
  return { base, seen };
}

const KEYS = { keys: [{ kty: 'EC', kid: 'k1' }] };
const discovery = (issuer: string, jwksUri: unknown = `${issuer}/keys`) => ({
  body: JSON.stringify({ issuer, jwks_uri: jwksUri }),
});

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'issuer-keys-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function source(issuer: string, options: Partial<IssuerKeysSource> = {}): IssuerKeysSource {
  return {
    issuer,
    jwksUrl: '',
    tokenFile: '',
    caFile: '',
    httpsOnly: false,
    maxBytes: 1024,
    ...options,
  };
}

const read = (from: IssuerKeysSource, signal = new AbortController().signal) =>
  readIssuerKeys(from, signal);

/** The KeysUnavailable's message `promise` rejects with. */
async function refusal(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(KeysUnavailable);
  expect((error as KeysUnavailable).name).toBe('KeysUnavailable');
  return (error as KeysUnavailable).message;
}

function tokenFileWith(text: string): string {
  const file = path.join(dir, 'token');
  fs.writeFileSync(file, text);
  return file;
}

describe('readIssuerKeys', () => {
  it('finds the key set by discovery, asking for JSON with the token file’s token, trimmed', async () => {
    const { base, seen } = await issuerServer((base) => ({
      '/.well-known/openid-configuration': discovery(base),
      '/keys': { body: JSON.stringify(KEYS) },
    }));
    const tokenFile = tokenFileWith('  sa-token\n');
    expect(await read(source(base, { tokenFile }))).toEqual(KEYS);
    expect(seen).toEqual([
      {
        path: '/.well-known/openid-configuration',
        authorization: 'Bearer sa-token',
        accept: 'application/json',
      },
      { path: '/keys', authorization: 'Bearer sa-token', accept: 'application/json' },
    ]);
  });

  it('sends no Authorization without a token file, or with an empty one', async () => {
    const { base, seen } = await issuerServer(() => ({ '/keys': { body: '{}' } }));
    await read(source(base, { jwksUrl: `${base}/keys` }));
    await read(source(base, { jwksUrl: `${base}/keys`, tokenFile: tokenFileWith(' \n') }));
    expect(seen.map((s) => s.authorization)).toEqual([undefined, undefined]);
  });

  it('reads the key set’s URL when set, without discovery', async () => {
    const { base, seen } = await issuerServer(() => ({ '/keys': { body: JSON.stringify(KEYS) } }));
    expect(await read(source('https://issuer.invalid', { jwksUrl: `${base}/keys` }))).toEqual(KEYS);
    expect(seen.map((s) => s.path)).toEqual(['/keys']);
  });

  it('asks for discovery below an issuer with trailing slashes, which the document must name', async () => {
    const { base, seen } = await issuerServer((base) => ({
      '/tenant/.well-known/openid-configuration': discovery(`${base}/tenant//`, `${base}/keys`),
      '/keys': { body: JSON.stringify(KEYS) },
    }));
    expect(await read(source(`${base}/tenant//`))).toEqual(KEYS);
    expect(seen.map((s) => s.path)).toEqual(['/tenant/.well-known/openid-configuration', '/keys']);
  });

  it.each([
    ['names another issuer', (base: string) => discovery(`${base}/other`), 'names another issuer'],
    ['is null', () => ({ body: 'null' }), 'names another issuer'],
    ['has no jwks_uri', (base: string) => discovery(base, null), 'has no jwks_uri'],
    ['has a jwks_uri that is no string', (base: string) => discovery(base, 7), 'has no jwks_uri'],
  ])('refuses a discovery document that %s', async (_what, document, says) => {
    const { base, seen } = await issuerServer((base) => ({
      '/.well-known/openid-configuration': document(base),
      '/keys': { body: JSON.stringify(KEYS) },
    }));
    expect(await refusal(read(source(base)))).toBe(`the discovery document ${says}`);
    expect(seen).toHaveLength(1);
  });

  it.each([
    ['token file', { tokenFile: '/nonexistent/token' }],
    ['CA file', { caFile: '/nonexistent/ca.pem' }],
  ])('is KeysUnavailable when the %s cannot be read', async (what, options) => {
    expect(await refusal(read(source('http://127.0.0.1:1', options)))).toBe(
      `cannot read the ${what}: ENOENT`,
    );
  });

  it('refuses a key URL that is not a URL, or not http(s), or http when only https is allowed', async () => {
    expect(await refusal(read(source('x', { jwksUrl: 'not a url' })))).toBe(
      'a key URL is not a URL',
    );
    expect(await refusal(read(source('x', { jwksUrl: 'ftp://127.0.0.1/keys' })))).toBe(
      'ftp://127.0.0.1 is not https',
    );
    const { base, seen } = await issuerServer(() => ({ '/keys': { body: '{}' } }));
    expect(await refusal(read(source(base, { jwksUrl: `${base}/keys`, httpsOnly: true })))).toBe(
      `${base} is not https`,
    );
    expect(seen).toEqual([]);
  });

  it('refuses an answer other than 200, naming the URL without its query', async () => {
    const { base } = await issuerServer(() => ({
      '/keys?v=1': { status: 203, body: JSON.stringify(KEYS) },
    }));
    expect(await refusal(read(source(base, { jwksUrl: `${base}/keys?v=1` })))).toBe(
      `${base}/keys: answered 203`,
    );
    expect(await refusal(read(source(base, { jwksUrl: `${base}/none` })))).toBe(
      `${base}/none: answered 404`,
    );
  });

  it('reads an answer of up to maxBytes, and refuses a longer one', async () => {
    const exactly = JSON.stringify({ keys: [], pad: '' });
    const pad = 'x'.repeat(100 - exactly.length);
    const { base } = await issuerServer(() => ({
      '/100': { body: JSON.stringify({ keys: [], pad }) },
      '/101': { body: JSON.stringify({ keys: [], pad: `${pad}x` }) },
    }));
    expect(await read(source(base, { jwksUrl: `${base}/100`, maxBytes: 100 }))).toEqual({
      keys: [],
      pad,
    });
    expect(await refusal(read(source(base, { jwksUrl: `${base}/101`, maxBytes: 100 })))).toBe(
      `${base}/101: answer over 100 bytes`,
    );
  });

  it('refuses an answer that is not JSON', async () => {
    const { base } = await issuerServer(() => ({ '/keys': { body: '{"keys": [' } }));
    expect(await refusal(read(source(base, { jwksUrl: `${base}/keys` })))).toBe(
      `${base}/keys: answer is not JSON`,
    );
  });

  it('is KeysUnavailable when the connection is refused, cut mid-answer, or aborted', async () => {
    const { base } = await issuerServer(() => ({
      '/cut': (res) => {
        res.writeHead(200, { 'Content-Length': '1000' });
        res.write('{"keys": [', () => res.destroy());
      },
      '/hang': () => undefined,
    }));
    const closed = `http://127.0.0.1:${await freePort()}/keys`;
    expect(await refusal(read(source(base, { jwksUrl: closed })))).toBe(`${closed}: ECONNREFUSED`);
    expect(await refusal(read(source(base, { jwksUrl: `${base}/cut` })))).toBe(
      `${base}/cut: ECONNRESET`,
    );
    const controller = new AbortController();
    const hanging = read(source(base, { jwksUrl: `${base}/hang` }), controller.signal);
    setTimeout(() => {
      controller.abort();
    }, 50);
    expect(await refusal(hanging)).toBe(`${base}/hang: timed out`);
  });
});

/** An https issuer with a self-signed certificate for 127.0.0.1: trusted only through caFile. */
describe('readIssuerKeys over https', () => {
  const itWithOpenssl = itWithCommand('openssl', 'apt-get install openssl');
  const haveOpenssl = findCommand('openssl') !== undefined;
  let certDir: string;
  beforeAll(() => {
    certDir = fs.mkdtempSync(path.join(os.tmpdir(), 'issuer-keys-tls-'));
    if (!haveOpenssl) return;
    execFileSync(
      'openssl',
      [
        ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'],
        ...['-nodes', '-keyout', path.join(certDir, 'key.pem')],
        ...['-out', path.join(certDir, 'cert.pem'), '-days', '1', '-subj', '/CN=127.0.0.1'],
        ...['-addext', 'subjectAltName=IP:127.0.0.1'],
      ],
      { stdio: 'ignore' },
    );
  });
  afterAll(() => {
    fs.rmSync(certDir, { recursive: true, force: true });
  });

  itWithOpenssl('trusts the issuer’s certificate through caFile only', async () => {
    const { base, seen } = await issuerServer(() => ({ '/keys': { body: JSON.stringify(KEYS) } }), {
      key: fs.readFileSync(path.join(certDir, 'key.pem')),
      cert: fs.readFileSync(path.join(certDir, 'cert.pem')),
    });
    const caFile = path.join(certDir, 'cert.pem');
    const tokenFile = tokenFileWith('sa-token');
    expect(
      await read(source(base, { jwksUrl: `${base}/keys`, caFile, tokenFile, httpsOnly: true })),
    ).toEqual(KEYS);
    expect(seen).toEqual([
      { path: '/keys', authorization: 'Bearer sa-token', accept: 'application/json' },
    ]);
    expect(await refusal(read(source(base, { jwksUrl: `${base}/keys`, httpsOnly: true })))).toBe(
      `${base}/keys: DEPTH_ZERO_SELF_SIGNED_CERT`,
    );
    expect(seen).toHaveLength(1);
  });
});
