import fs from 'node:fs';
import path from 'node:path';
import { loadManifests } from './support/manifests';
import { argsOf, envOf, execCommand, readDockerfile } from '../testing/dockerfile';
import { REPO_ROOT } from '../testing/process';

const stages = readDockerfile();
const runtime = stages.at(-1)!;

describe('Dockerfile', () => {
  it('is multi-stage and pins every base image by full version', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const stage of stages) {
      expect(stage.image).toMatch(/^[\w./-]+:\d+\.\d+\.\d+[\w.-]*(@sha256:[0-9a-f]{64})?$/);
    }
  });

  it('runs Node 24, the current LTS, in production mode with the bundles (the entry, migrate, replay) and migrations alone', () => {
    expect(runtime.image).toMatch(/^node:24\./);
    expect(envOf(runtime).NODE_ENV).toBe('production');
    expect(argsOf(runtime, 'RUN').join('\n')).not.toMatch(/npm/);
    expect(argsOf(runtime, 'COPY')).toEqual([
      '--from=build /app/dist/main.cjs /app/dist/framework.cjs /app/dist/pg.cjs /app/dist/cloudevents.cjs /app/dist/jose.cjs /app/dist/slack-web-api.cjs ./dist/',
      '--from=build /app/dist/migrate.cjs ./dist/migrate.cjs',
      '--from=build /app/dist/replay.cjs ./dist/replay.cjs',
      'migrations ./migrations',
    ]);
  });

  it('runs as a numeric non-root user, the one the Knative Service names', () => {
    const user = argsOf(runtime, 'USER').at(-1);
    expect(user).toMatch(/^\d+(:\d+)?$/);
    const [uid = '0', gid] = user!.split(':');
    expect(Number(uid)).toBeGreaterThan(0);
    const ksvc = loadManifests('knative').find(
      (m) => m.doc.kind === 'Service' && m.doc.apiVersion.startsWith('serving'),
    );
    const security = (ksvc!.doc as any).spec.template.spec.containers[0].securityContext;
    expect(security.runAsUser).toBe(Number(uid));
    if (gid !== undefined) expect(security.runAsGroup).toBe(Number(gid));
  });

  it('starts the entry bundle with node in exec form, and no --port', () => {
    const cmd = execCommand(runtime);
    expect(cmd).toEqual(['node', 'dist/main.cjs']);
    expect(argsOf(runtime, 'ENTRYPOINT')).toEqual([]);
    expect(fs.existsSync(path.join(REPO_ROOT, cmd![1]!))).toBe(true);
  });

  it('warms the compile cache as the runtime user with exactly the CMD', () => {
    expect(envOf(runtime).NODE_COMPILE_CACHE).toMatch(/^\//);
    const runs = argsOf(runtime, 'RUN');
    const warm = runs.find((r) => r.includes('warm-compile-cache.js'));
    expect(warm).toBeDefined();
    expect(warm).toContain(`warm-compile-cache.js ${execCommand(runtime)!.join(' ')}`);
    const position = (match: (i: { keyword: string; args: string }) => boolean) =>
      runtime.instructions.findIndex(match);
    expect(position((i) => i.keyword === 'USER')).toBeLessThan(position((i) => i.args === warm));
    expect(fs.existsSync(path.join(REPO_ROOT, 'build', 'warm-compile-cache.js'))).toBe(true);
  });

  it('keeps node_modules, tests and .git out of the build context', () => {
    const ignored = fs.readFileSync(path.join(REPO_ROOT, '.dockerignore'), 'utf8').split('\n');
    for (const entry of ['node_modules', 'test', '.git', 'dist']) expect(ignored).toContain(entry);
  });

  it('caps V8’s heap inside the Knative container’s memory limit, with room to spare', () => {
    const options = envOf(runtime).NODE_OPTIONS ?? '';
    const oldSpaceMb = Number(/--max-old-space-size=(\d+)/.exec(options)?.[1]);
    const semiSpaceMb = Number(/--max-semi-space-size=(\d+)/.exec(options)?.[1]);
    expect(oldSpaceMb).toBeGreaterThan(0);
    expect(semiSpaceMb).toBeGreaterThan(0);
    const ksvc = loadManifests('knative').find(
      (m) => m.doc.kind === 'Service' && m.doc.apiVersion.startsWith('serving'),
    );
    const resources = (ksvc!.doc as any).spec.template.spec.containers[0].resources;
    const mebibytes = (quantity: string) => Number(/^(\d+)Mi$/.exec(quantity)?.[1]);
    const limitMb = mebibytes(resources.limits.memory);
    // The young generation is three semi-spaces' worth at most; 64 MB for code and native memory.
    expect(oldSpaceMb + 3 * semiSpaceMb + 64).toBeLessThanOrEqual(limitMb);
    expect(mebibytes(resources.requests.memory)).toBeLessThanOrEqual(limitMb);
  });
});
