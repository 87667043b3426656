import { UpstreamError } from '../errors';
import type { Upstream } from '../http/upstream';
import { readTextFile } from '../read-file';

/** Where Vault tokens come from. Tokens never appear in errors or logs. */
export interface VaultTokenSource {
  /** A token to use now. */
  token(): Promise<string>;
  /** Vault refused the token (403): the next token() reads or logs in again. */
  invalidate(): void;
}

/** VAULT_TOKEN: used as given; there is nothing to re-read when Vault refuses it. */
export class StaticToken implements VaultTokenSource {
  constructor(private readonly value: string) {}

  token(): Promise<string> {
    return Promise.resolve(this.value);
  }

  invalidate(): void {
    // A fixed token stays what it is; the refusal surfaces as the request's error.
  }
}

async function readTrimmed(file: string, setting: string): Promise<string> {
  try {
    const text = (await readTextFile(file)).trim();
    if (text === '') throw new UpstreamError(`${setting} ${file} is empty`);
    return text;
  } catch (error) {
    if (error instanceof UpstreamError) throw error;
    // Stryker disable next-line StringLiteral: every error fs.readFile fails with has a code (ENOENT, EISDIR, ERR_INVALID_ARG_VALUE…)
    const code = (error as NodeJS.ErrnoException).code ?? 'unknown error';
    throw new UpstreamError(`cannot read ${setting} ${file} (${code})`);
  }
}

/**
 * VAULT_TOKEN_FILE, as Vault Agent writes it: re-read at least every rereadMs (Agent rewrites the
 * file when it renews) and whenever Vault refuses the token.
 */
export class FileToken implements VaultTokenSource {
  private cached: { token: string; readAt: number } | undefined;

  constructor(
    private readonly file: string,
    private readonly rereadMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  async token(): Promise<string> {
    const now = this.now();
    if (this.cached === undefined || now - this.cached.readAt >= this.rereadMs) {
      this.cached = { token: await readTrimmed(this.file, 'VAULT_TOKEN_FILE'), readAt: now };
    }
    return this.cached.token;
  }

  invalidate(): void {
    this.cached = undefined;
  }
}

/** The least time a token from a login is reused, whatever lease Vault reports. */
const MIN_TOKEN_REUSE_MS = 1000;

interface LoginAnswer {
  auth?: { client_token?: unknown; lease_duration?: unknown };
}

/**
 * Vault's Kubernetes auth: logs in with the pod's service-account JWT (re-read at each login, as
 * the kubelet rotates it) and logs in again at two thirds of the lease (a lease of 0: after
 * noLeaseReuseMs), or when Vault refuses the token. One login at a time.
 */
export class KubernetesLogin implements VaultTokenSource {
  private cached: { token: string; renewAt: number } | undefined;
  private pending: Promise<string> | undefined;

  constructor(
    private readonly upstream: Upstream,
    private readonly options: {
      mount: string;
      role: string;
      jwtFile: string;
      timeoutMs: number;
      /** How long a token is reused when the login reports no lease (lease_duration 0). */
      noLeaseReuseMs: number;
    },
    private readonly now: () => number = () => performance.now(),
  ) {}

  token(): Promise<string> {
    if (this.cached !== undefined && this.now() < this.cached.renewAt) {
      return Promise.resolve(this.cached.token);
    }
    this.pending ??= this.login().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  invalidate(): void {
    this.cached = undefined;
  }

  private async login(): Promise<string> {
    const jwt = await readTrimmed(this.options.jwtFile, 'VAULT_K8S_JWT_FILE');
    const started = this.now();
    const res = await this.upstream.request('POST', `/v1/auth/${this.options.mount}/login`, {
      json: { role: this.options.role, jwt },
      timeoutMs: this.options.timeoutMs,
    });
    if (res.status !== 200) {
      throw new UpstreamError(`Kubernetes login to Vault failed (status ${res.status})`);
    }
    let answer: LoginAnswer;
    try {
      answer = JSON.parse(res.body.toString('utf8')) as LoginAnswer;
    } catch {
      throw new UpstreamError('Kubernetes login to Vault gave an unreadable answer');
    }
    const token = answer.auth?.client_token;
    const leaseSeconds = answer.auth?.lease_duration;
    if (typeof token !== 'string' || token === '' || typeof leaseSeconds !== 'number') {
      throw new UpstreamError('Kubernetes login to Vault gave no token');
    }
    // Two thirds of the lease, never less than a second; a lease of 0 would mean a login per read.
    const reuseMs =
      leaseSeconds > 0
        ? Math.max((leaseSeconds * 1000 * 2) / 3, MIN_TOKEN_REUSE_MS)
        : this.options.noLeaseReuseMs;
    this.cached = { token, renewAt: started + reuseMs };
    return token;
  }
}
