import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { freePort } from './process';

/**
 * Loopback stand-ins for Vault and Ory that answer as their documentation says, and can also
 * misbehave the ways networks do. Used by the tests, the soak and the benchmark.
 */

/** Text planted in every body and header the stand-ins send: it must never appear in a reason. */
export const UPSTREAM_CANARY = 'upstream-canary-7f3a';

export type Fault =
  | { kind: 'none' }
  /** Accepts the connection and the request, never answers. */
  | { kind: 'hang' }
  /** Accepts, then destroys the socket without an answer. */
  | { kind: 'reset' }
  /** Resets the next request only, as a server closing a pooled connection would. */
  | { kind: 'resetOnce' }
  /** Answers normally after a delay. */
  | { kind: 'slow'; delayMs: number }
  /** Answers bytes that are not HTTP. */
  | { kind: 'garbage' }
  /** Answers this status instead of the documented one. */
  | { kind: 'status'; status: number }
  /** Answers this status and this body, as written, to every request (an unexpected answer). */
  | { kind: 'answer'; status: number; text: string };

export interface StandIn {
  readonly url: string;
  /** HTTP requests received (whatever the answer). */
  readonly requests: number;
  /** TCP connections accepted. */
  readonly connections: number;
  /** TCP connections open now. */
  readonly openConnections: number;
  /** The newest requests received: method, path and the X-Request-ID each carried (if any). */
  readonly log: readonly { method: string; path: string; requestId: string | undefined }[];
  fault: Fault;
  resetCounts(): void;
  /** Stops listening (connections are refused) until comeBack(), on the same port. */
  goAway(): Promise<void>;
  comeBack(): Promise<void>;
  close(): Promise<void>;
}

type Answer = (
  req: http.IncomingMessage,
  url: URL,
  body: string,
) => { status: number; body?: unknown };

/** The request log keeps the newest entries only. */
const LOG_MAX = 10_000;

async function startStandIn(answer: Answer): Promise<StandIn> {
  const sockets = new Set<Socket>();
  const counts = { requests: 0, connections: 0 };
  const log: { method: string; path: string; requestId: string | undefined }[] = [];
  const state: { fault: Fault } = { fault: { kind: 'none' } };

  const server = http.createServer((req, res) => {
    let received = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (received += chunk));
    req.on('end', () => {
      respond(req, res, received);
    });
  });
  const respond = (req: http.IncomingMessage, res: http.ServerResponse, received: string) => {
    counts.requests += 1;
    const requestId = req.headers['x-request-id'];
    if (log.length >= LOG_MAX) log.shift();
    log.push({
      method: req.method ?? '',
      path: new URL(req.url ?? '/', 'http://standin').pathname,
      requestId: typeof requestId === 'string' ? requestId : undefined,
    });
    const fault = state.fault;
    const reply = (status: number, body?: unknown) => {
      const text = body === undefined ? '' : JSON.stringify(body);
      res.writeHead(status, {
        'Content-Type': 'application/json',
        'X-Upstream-Note': UPSTREAM_CANARY,
      });
      res.end(req.method === 'HEAD' ? undefined : text);
    };
    switch (fault.kind) {
      case 'hang':
        return;
      case 'reset':
        req.socket.destroy();
        return;
      case 'resetOnce':
        state.fault = { kind: 'none' };
        req.socket.destroy();
        return;
      case 'garbage':
        req.socket.end(`${UPSTREAM_CANARY} this is not HTTP\r\n\r\n`);
        return;
      case 'status':
        reply(fault.status, { errors: [UPSTREAM_CANARY] });
        return;
      case 'answer':
        res.writeHead(fault.status, { 'Content-Type': 'application/json' });
        res.end(fault.text);
        return;
      case 'slow': {
        const timer = setTimeout(() => {
          const { status, body } = answer(req, new URL(req.url ?? '/', 'http://standin'), received);
          reply(status, body);
        }, fault.delayMs);
        res.on('close', () => {
          clearTimeout(timer);
        });
        return;
      }
      case 'none': {
        const { status, body } = answer(req, new URL(req.url ?? '/', 'http://standin'), received);
        reply(status, body);
      }
    }
  };
  server.on('connection', (socket) => {
    counts.connections += 1;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const stopListening = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => {
        resolve();
      });
    });

  return {
    url: `http://127.0.0.1:${port}`,
    get requests() {
      return counts.requests;
    },
    get connections() {
      return counts.connections;
    },
    get openConnections() {
      return sockets.size;
    },
    log,
    get fault() {
      return state.fault;
    },
    set fault(fault: Fault) {
      state.fault = fault;
    },
    resetCounts() {
      counts.requests = 0;
      counts.connections = 0;
      log.length = 0;
    },
    goAway: stopListening,
    comeBack: () =>
      new Promise<void>((resolve) => {
        server.listen(port, '127.0.0.1', resolve);
      }),
    close: () => (server.listening ? stopListening() : Promise.resolve()),
  };
}

/** Vault's server states and how GET /v1/sys/health reports each (Vault 1.19 documentation). */
export const VAULT_STATES = [
  'active',
  'standby',
  'performance-standby',
  'dr-secondary',
  'standby-unreachable',
  'uninitialized',
  'sealed',
  'removed',
] as const;
export type VaultState = (typeof VAULT_STATES)[number];

export interface VaultStandIn extends StandIn {
  state: VaultState;
  /** KV v2 secrets under the mount "secret", by path. */
  secrets: Record<string, Record<string, string>>;
  /** Tokens Vault accepts, with the time (ms since epoch) each stops being accepted. */
  tokens: Map<string, number>;
  /** The Kubernetes auth method: the role and service-account JWT it accepts. */
  kubernetes: { role: string; jwt: string; leaseSeconds: number; logins: number };
  secretReads: number;
}

function queryCode(url: URL, name: string, fallback: number): number {
  const value = url.searchParams.get(name);
  return value !== null && /^\d{3}$/.test(value) ? Number(value) : fallback;
}

function vaultHealthCode(state: VaultState, url: URL): number {
  const flag = (name: string) => url.searchParams.get(name) === 'true';
  switch (state) {
    case 'active':
      return queryCode(url, 'activecode', 200);
    case 'standby':
      return flag('standbyok') ? 200 : queryCode(url, 'standbycode', 429);
    case 'performance-standby':
      return flag('perfstandbyok') ? 200 : queryCode(url, 'performancestandbycode', 473);
    case 'dr-secondary':
      return queryCode(url, 'drsecondarycode', 472);
    case 'standby-unreachable':
      return queryCode(url, 'haunhealthycode', 474);
    case 'uninitialized':
      return queryCode(url, 'uninitcode', 501);
    case 'sealed':
      return queryCode(url, 'sealedcode', 503);
    case 'removed':
      return queryCode(url, 'removedcode', 530);
  }
}

export async function startVaultStandIn(initial: VaultState = 'active'): Promise<VaultStandIn> {
  const vault = {
    state: initial,
    secrets: {} as Record<string, Record<string, string>>,
    tokens: new Map<string, number>(),
    kubernetes: { role: '', jwt: '', leaseSeconds: 3600, logins: 0 },
    secretReads: 0,
  };
  const denied = { status: 403, body: { errors: ['permission denied'] } };
  const standIn = await startStandIn((req, url, received) => {
    if (url.pathname === '/v1/auth/kubernetes/login' && req.method === 'POST') {
      const login = JSON.parse(received || '{}') as { role?: string; jwt?: string };
      if (login.role !== vault.kubernetes.role || login.jwt !== vault.kubernetes.jwt) return denied;
      vault.kubernetes.logins += 1;
      const token = `hvs.k8s-${vault.kubernetes.logins}-${UPSTREAM_CANARY}`;
      const lifetimeMs =
        vault.kubernetes.leaseSeconds === 0 ? Infinity : vault.kubernetes.leaseSeconds * 1000;
      vault.tokens.set(token, Date.now() + lifetimeMs);
      return {
        status: 200,
        body: {
          auth: {
            client_token: token,
            accessor: 'accessor',
            policies: ['coffeebuddy'],
            lease_duration: vault.kubernetes.leaseSeconds,
            renewable: true,
          },
        },
      };
    }
    const kv = /^\/v1\/secret\/data\/(.+)$/.exec(url.pathname);
    if (kv !== null && req.method === 'GET') {
      vault.secretReads += 1;
      const token = req.headers['x-vault-token'];
      const expires = typeof token === 'string' ? vault.tokens.get(token) : undefined;
      if (expires === undefined || expires < Date.now()) return denied;
      const data = vault.secrets[decodeURIComponent(kv[1] ?? '')];
      if (data === undefined) return { status: 404, body: { errors: [] } };
      return { status: 200, body: { data: { data, metadata: { version: 1, destroyed: false } } } };
    }
    if (url.pathname !== '/v1/sys/health' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      return { status: 404, body: { errors: [] } };
    }
    return {
      status: vaultHealthCode(vault.state, url),
      body: {
        initialized: vault.state !== 'uninitialized',
        sealed: vault.state === 'sealed',
        standby: vault.state.includes('standby'),
        performance_standby: vault.state === 'performance-standby',
        replication_dr_mode: vault.state === 'dr-secondary' ? 'secondary' : 'disabled',
        server_time_utc: Math.floor(Date.now() / 1000),
        version: '1.19.0',
        cluster_name: UPSTREAM_CANARY,
      },
    };
  });
  return Object.defineProperties(standIn, {
    state: {
      get: () => vault.state,
      set: (state: VaultState) => {
        vault.state = state;
      },
    },
    secrets: { get: () => vault.secrets },
    tokens: { get: () => vault.tokens },
    kubernetes: { get: () => vault.kubernetes },
    secretReads: { get: () => vault.secretReads },
  }) as VaultStandIn;
}

export interface OryStandIn extends StandIn {
  /** What the ready check finds: the database reachable and migrations applied. */
  ready: boolean;
}

/** Ory's shared health handler: /health/alive always 200; /health/ready 200 or 503. */
export async function startOryStandIn(ready = true): Promise<OryStandIn> {
  const ory = { ready };
  const standIn = await startStandIn((req, url) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return { status: 405 };
    if (url.pathname === '/health/alive') return { status: 200, body: { status: 'ok' } };
    if (url.pathname === '/health/ready') {
      return ory.ready
        ? { status: 200, body: { status: 'ok' } }
        : { status: 503, body: { errors: { database: `${UPSTREAM_CANARY} ping failed` } } };
    }
    return { status: 404, body: { error: { code: 404, message: 'Not Found' } } };
  });
  return Object.defineProperty(standIn, 'ready', {
    get: () => ory.ready,
    set: (value: boolean) => {
      ory.ready = value;
    },
  }) as OryStandIn;
}

/** A loopback URL where nothing listens: connections to it are refused. */
export async function absentUrl(): Promise<string> {
  return `http://127.0.0.1:${await freePort()}`;
}
