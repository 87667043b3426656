import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { requireBuild, startCoffeebuddy } from '../../testing/process';
import {
  startOryStandIn,
  startVaultStandIn,
  type OryStandIn,
  type VaultStandIn,
} from '../../testing/standins';

const MODULE_LIST_PRELOAD = path.join(__dirname, '..', 'support', 'module-list.js');
/** Node's modules a process reaching its upstreams over plain http never needs, and their cost. */
const ON_FIRST_USE = [
  'NativeModule tls', // with https: about 8 MB of memory, OpenSSL's TLS and its module
  'NativeModule https',
  'NativeModule zlib', // node-fetch's, for compressed answers only
  'NativeModule fs/promises', // brings readline with it
];

/**
 * What the image's entry loads, from Node's own list (process.moduleLoadList, written at exit by a
 * preload): TLS, zlib and node:fs/promises only when first needed. An ingress whose Vault, Ory and
 * Broker are plain http inside the cluster (a mesh's sidecar speaking TLS for it) never loads them.
 */
describe('modules the production entry loads', () => {
  let dir: string;
  let vault: VaultStandIn;
  let ory: OryStandIn;
  beforeAll(async () => {
    requireBuild();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coffeebuddy-modules-'));
    [vault, ory] = await Promise.all([startVaultStandIn('active'), startOryStandIn(true)]);
  });
  afterAll(async () => {
    await Promise.all([vault.close(), ory.close()]);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Starts the entry against `vaultUrl`, asks for its readiness, stops it: what it loaded. */
  async function loadedAfterReadiness(vaultUrl: string, file: string): Promise<string[]> {
    const listFile = path.join(dir, file);
    const server = await startCoffeebuddy(vaultUrl, ory.url, { MODULE_LIST_FILE: listFile }, [
      '-r',
      MODULE_LIST_PRELOAD,
    ]);
    try {
      await fetch(`${server.url}/health/ready`, { signal: AbortSignal.timeout(10_000) });
    } finally {
      expect(await server.stop()).toBe(0);
    }
    return fs.readFileSync(listFile, 'utf8').split('\n');
  }

  it('loads none of TLS, zlib or fs/promises while every upstream is plain http', async () => {
    const loaded = await loadedAfterReadiness(vault.url, 'http.txt');
    // node-fetch did make its requests: the list is of a process that used it.
    expect(vault.requests).toBeGreaterThan(0);
    expect(ory.requests).toBeGreaterThan(0);
    expect(loaded).toContain('NativeModule http');
    expect(ON_FIRST_USE.filter((name) => loaded.includes(name))).toEqual([]);
  });

  it('loads TLS for an https upstream, and speaks it there', async () => {
    // Not a TLS server: it keeps the first byte each connection sends and hangs up.
    const firstBytes: number[] = [];
    const server = net.createServer((socket) => {
      socket.once('data', (chunk: Buffer) => {
        firstBytes.push(chunk[0]!);
        socket.destroy();
      });
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    try {
      const loaded = await loadedAfterReadiness(`https://127.0.0.1:${port}`, 'https.txt');
      expect(loaded).toEqual(expect.arrayContaining(['NativeModule tls', 'NativeModule https']));
      // 0x16: a TLS handshake record (the ClientHello), through node-fetch's https.
      expect(firstBytes.length).toBeGreaterThan(0);
      expect(new Set(firstBytes)).toEqual(new Set([0x16]));
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
