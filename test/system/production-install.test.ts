import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { envOf, execCommand, readDockerfile, runtimeCopies } from '../../testing/dockerfile';
import { REPO_ROOT, freePort, requireBuild, startProcess } from '../../testing/process';
import { absentUrl } from '../../testing/standins';

/**
 * What the image holds, rebuilt without Docker: the runtime stage's files in a temp dir (the
 * bundle alone, no node_modules), its CMD and ENV. Fails when the bundle needs a file it lacks.
 */
describe('production install', () => {
  let dir: string;

  beforeAll(() => {
    requireBuild();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coffeebuddy-image-'));
  });
  afterAll(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('serves /health/live from the bundle alone, started by the image CMD', async () => {
    const stages = readDockerfile();
    const runtime = stages.at(-1)!;
    for (const { source, target } of runtimeCopies(stages)) {
      const destination =
        target.endsWith('/') || target === '.' || target === './'
          ? path.join(dir, target, path.basename(source))
          : path.join(dir, target);
      fs.cpSync(path.join(REPO_ROOT, source), destination, { recursive: true });
    }
    expect(fs.readdirSync(dir, { recursive: true }).map(String).sort()).toEqual([
      'dist',
      'dist/cloudevents.cjs',
      'dist/framework.cjs',
      'dist/jose.cjs',
      'dist/main.cjs',
      'dist/migrate.cjs',
      'dist/pg.cjs',
      'dist/replay.cjs',
      'dist/slack-web-api.cjs',
      'migrations',
      ...fs.readdirSync(path.join(REPO_ROOT, 'migrations')).map((f) => `migrations/${f}`),
    ]);
    // The chunks the entry loads on demand stand alone, with no node_modules beside them.
    const chunks = spawnSync(
      process.execPath,
      [
        '-e',
        "const f = require('./dist/framework.cjs'); const pg = require('./dist/pg.cjs');" +
          "const ce = require('./dist/cloudevents.cjs'); const jose = require('./dist/jose.cjs');" +
          "const web = require('./dist/slack-web-api.cjs');" +
          'console.log(typeof f.http, typeof f.getTestServer, typeof pg.Pool, typeof ce.HTTP.binary,' +
          ' typeof jose.jwtVerify, typeof web.WebClient)',
      ],
      { cwd: dir, encoding: 'utf8', timeout: 30_000 },
    );
    expect(chunks.stdout.trim()).toBe('function function function function function function');
    // The migration entry finds its SQL files beside dist/: it gets as far as connecting.
    const migrate = spawnSync(process.execPath, ['dist/migrate.cjs'], {
      cwd: dir,
      env: { PATH: process.env.PATH, PGHOST: '127.0.0.1', PGPORT: '9', PGSSLMODE: 'disable' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect([migrate.status, JSON.parse(migrate.stdout).reason]).toEqual([
      1,
      'cannot reach PostgreSQL at 127.0.0.1:9 (ECONNREFUSED)',
    ]);

    // The replay entry stands alone too: it gets as far as reading the table.
    const replay = spawnSync(process.execPath, ['dist/replay.cjs', '--all', '--dry-run'], {
      cwd: dir,
      env: { PATH: process.env.PATH, PGHOST: '127.0.0.1', PGPORT: '9', PGSSLMODE: 'disable' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect([replay.status, replay.stdout]).toEqual([
      1,
      'replay stopped: cannot reach PostgreSQL at 127.0.0.1:9 (ECONNREFUSED)\n',
    ]);

    const [command, ...args] = execCommand(runtime)!;
    expect(command).toBe('node');
    // The image's own cache path is outside this temp copy: warm one inside it, as the image does.
    const env = { ...envOf(runtime), NODE_COMPILE_CACHE: path.join(dir, '.compile-cache') };
    execFileSync(
      process.execPath,
      [path.join(REPO_ROOT, 'build', 'warm-compile-cache.js'), process.execPath, ...args],
      {
        cwd: dir,
        env: { PATH: process.env.PATH, ...env, WARM_PORT: String(await freePort()) },
        stdio: 'pipe',
        timeout: 60_000,
      },
    );
    if (Number(process.versions.node.split('.')[0]) >= 22) {
      // One bundle, so one cache entry: compiled code for it, not an empty placeholder.
      const entries = fs
        .readdirSync(env.NODE_COMPILE_CACHE, { recursive: true })
        .map((entry) => path.join(env.NODE_COMPILE_CACHE, String(entry)))
        .filter((entry) => fs.statSync(entry).isFile());
      expect(entries.length).toBeGreaterThan(0);
      expect(Math.max(...entries.map((entry) => fs.statSync(entry).size))).toBeGreaterThan(50_000);
    }
    const running = await startProcess({
      args,
      cwd: dir,
      env: {
        ...env,
        LISTEN_HOST: '127.0.0.1',
        VAULT_ADDR: await absentUrl(),
        ORY_URL: await absentUrl(),
      },
    });
    try {
      const res = await fetch(`${running.url}/health/live`);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ status: 'live' });
    } finally {
      expect(await running.stop()).toBe(0);
    }
  }, 240_000);
});
