import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { Registry } from 'prom-client';
import { buildPostgresClient, type PostgresClient } from '../lib/clients/postgres';
import { loadSettings } from '../lib/config/settings';
import { createLogger, type Logger } from '../lib/logger';
import { migrate, readMigrations } from '../lib/migrations';
import { FakeClient } from './fakes';
import { freePort, REPO_ROOT } from './process';
import { itWhen } from './tools';

/**
 * Throwaway PostgreSQL clusters for tests: Debian's server binaries (off PATH, under
 * /usr/lib/postgresql/<version>/bin), run as the `postgres` user when the tests run as root
 * (initdb refuses root), listening on 127.0.0.1 and a free port, with fsync off.
 */

/** The newest installed server's bin directory, or undefined. */
export function postgresBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!fs.existsSync(root)) return undefined;
  const versions = fs
    .readdirSync(root)
    .filter((v) => fs.existsSync(path.join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? undefined : path.join(root, versions[0], 'bin');
}

const IS_ROOT = process.getuid?.() === 0;
const BIN = postgresBinDir();

/**
 * `it` when PostgreSQL's server is installed; otherwise SKIPPED (a failure under CI=true). Chosen
 * when first called, inside a test file, so that the benchmark can use this module without jest.
 */
let chosen: jest.It | undefined;
export const itWithPostgres = ((...args: Parameters<jest.It>) => {
  chosen ??= itWhen(BIN !== undefined, 'PostgreSQL not found (install it with: npm run setup)');
  chosen(...args);
}) as jest.It;

/** The role and database the code under test uses; its password is changed by tests. */
export const APP_ROLE = 'coffeebuddy';
export const APP_DATABASE = 'coffeebuddy';
export const APP_PASSWORD = 'app-password-1';

/** Every server command is bounded: a stuck initdb or pg_ctl fails the test instead of hanging. */
const COMMAND_TIMEOUT_MS = 30_000;

function run(command: string, args: string[]): Promise<string> {
  const [file, argv] = IS_ROOT
    ? ['runuser', ['-u', 'postgres', '--', command, ...args]]
    : [command, args];
  return new Promise((resolve, reject) => {
    execFile(file, argv, { timeout: COMMAND_TIMEOUT_MS }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${path.basename(command)} failed: ${error.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

export interface PostgresCluster {
  readonly host: string;
  readonly port: number;
  /** Runs SQL as the superuser over the cluster's Unix socket (trusted; TCP needs a password). */
  admin(sql: string, database?: string): Promise<Record<string, unknown>[]>;
  /** The settings' environment for the app role over TCP, without TLS. */
  env(extra?: NodeJS.ProcessEnv): NodeJS.ProcessEnv;
  /** Stops the server (fast shutdown: sessions are ended); start() brings it back on the port. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops the server and deletes its files. */
  remove(): Promise<void>;
}

/**
 * initdb into a new temporary directory, start on 127.0.0.1 and a free port, and create the app
 * role (password APP_PASSWORD, scram-sha-256 over TCP) and its database. Writes are not flushed
 * (fsync off) unless `durable`, as the benchmark asks, to measure what production would.
 */
export async function startPostgres(cluster: { durable?: boolean } = {}): Promise<PostgresCluster> {
  if (BIN === undefined) throw new Error('PostgreSQL is not installed');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coffeebuddy-pg-'));
  const data = path.join(dir, 'data');
  const socketDir = path.join(dir, 'socket');
  fs.mkdirSync(socketDir);
  if (IS_ROOT) {
    const id = (flag: string) =>
      Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }));
    const [uid, gid] = [id('-u'), id('-g')];
    fs.chownSync(dir, uid, gid);
    fs.chownSync(socketDir, uid, gid);
  }
  const port = await freePort();
  const bin = (name: string) => path.join(BIN, name);
  const options = [
    `-c listen_addresses=127.0.0.1 -p ${port}`,
    `-c unix_socket_directories=${socketDir}`,
    cluster.durable ? '' : '-c fsync=off -c synchronous_commit=off -c full_page_writes=off',
  ].join(' ');
  const start = async () => {
    await run(bin('pg_ctl'), [
      '-D',
      data,
      '-l',
      path.join(dir, 'log'),
      '-o',
      options,
      '-w',
      '-t',
      '20',
      'start',
    ]);
  };
  const stop = async () => {
    await run(bin('pg_ctl'), ['-D', data, '-m', 'fast', '-w', '-t', '20', 'stop']);
  };

  const admin = async (sql: string, database = 'postgres') => {
    const client = new Client({
      host: socketDir,
      port,
      user: 'postgres',
      database,
      connectionTimeoutMillis: 5000,
    });
    await client.connect();
    try {
      return (await client.query(sql)).rows as Record<string, unknown>[];
    } finally {
      await client.end();
    }
  };

  try {
    await run(bin('initdb'), [
      '-D',
      data,
      '-U',
      'postgres',
      '--auth-local=trust',
      '--auth-host=scram-sha-256',
      '-E',
      'UTF8',
      '--no-sync',
    ]);
    await start();
    await admin(`CREATE ROLE ${APP_ROLE} LOGIN PASSWORD '${APP_PASSWORD}'`);
    await admin(`CREATE DATABASE ${APP_DATABASE} OWNER ${APP_ROLE}`);
  } catch (error) {
    await stop().catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
    throw error;
  }

  return {
    host: '127.0.0.1',
    port,
    admin,
    env: (extra = {}) => ({
      PGHOST: '127.0.0.1',
      PGPORT: String(port),
      PGDATABASE: APP_DATABASE,
      PGUSER: APP_ROLE,
      PGSSLMODE: 'disable',
      ...extra,
    }),
    stop,
    start,
    remove: async () => {
      await stop().catch(() => undefined);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Applies the repository's migrations (migrations/) to the cluster's app database, as the Job does. */
export async function applyMigrations(cluster: PostgresCluster): Promise<void> {
  const settings = loadSettings(cluster.env({ PGPASSWORD: APP_PASSWORD }));
  const logger = createLogger('error');
  const db = buildPostgresClient(settings, {
    vault: new FakeClient(),
    logger,
    registry: new Registry(),
  });
  try {
    await migrate(db, readMigrations(path.join(REPO_ROOT, 'migrations')), logger);
  } finally {
    await db.close();
  }
}

/**
 * For one test file: a throwaway cluster with the repository's migrations, started before its
 * tests, `tables` emptied before each, removed after all. The getter gives undefined where
 * PostgreSQL is not installed (the tests are then itWithPostgres's to skip).
 */
export function migratedCluster(tables: readonly string[]): () => PostgresCluster | undefined {
  let cluster: PostgresCluster | undefined;
  beforeAll(async () => {
    cluster = await startPostgres().catch(() => undefined);
    if (cluster !== undefined) await applyMigrations(cluster);
  }, 60_000);
  afterAll(async () => {
    await cluster?.remove();
  }, 60_000);
  beforeEach(async () => {
    if (tables.length > 0) await cluster?.admin(`TRUNCATE ${tables.join(', ')}`, APP_DATABASE);
  });
  return () => cluster;
}

/** The app's PostgreSQL client as a test builds it, with the logger and registry it was given. */
export interface AppDatabase {
  db: PostgresClient;
  logger: Logger;
  /** The logger's lines, parsed, debug and up. */
  lines: Record<string, unknown>[];
  registry: Registry;
}

/**
 * The app's PostgreSQL client on the cluster, as the app role over TCP (connect timeout 2 s), with
 * `env` over those settings (another database, another password); the caller closes `db`.
 */
export function appDatabase(cluster: PostgresCluster, env: NodeJS.ProcessEnv = {}): AppDatabase {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger('debug', (line) => lines.push(JSON.parse(line)));
  const registry = new Registry();
  const settings = loadSettings({
    ...cluster.env({ PGPASSWORD: APP_PASSWORD }),
    PG_CONNECT_TIMEOUT_MS: '2000',
    ...env,
  });
  const db = buildPostgresClient(settings, { vault: new FakeClient(), logger, registry });
  return { db, logger, lines, registry };
}
