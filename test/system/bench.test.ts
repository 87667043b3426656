import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT, requireBuild } from '../../testing/process';
import { itWithCommand } from '../../testing/tools';

/** The benchmark is not part of the suite; this only proves the script runs and reports. */
describe('npm run bench -- --quick', () => {
  itWithCommand('wrk', 'apt-get install wrk')(
    'runs every variant and writes its report',
    () => {
      requireBuild();
      const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'bench-')), 'result.json');
      const printed = execFileSync(
        process.execPath,
        [
          path.join(REPO_ROOT, 'node_modules/tsx/dist/cli.mjs'),
          'bench/bench.ts',
          '--quick',
          '--out',
          out,
        ],
        {
          cwd: REPO_ROOT,
          encoding: 'utf8',
          timeout: 170_000,
          env: { ...process.env, FORCE_COLOR: '0' },
        },
      );
      expect(printed).toContain('| ratio | value | target |');
      const result = JSON.parse(fs.readFileSync(out, 'utf8'));
      expect(Object.keys(result.coldStartMedianMs).sort()).toEqual(
        ['bare-node', 'coffeebuddy', 'coffeebuddy-ready', 'ff-hello'].sort(),
      );
      expect(Object.keys(result.load.coffeebuddy).sort()).toEqual([
        '/health/live',
        '/health/ready',
        '/metrics',
      ]);
      // The signed slash command: every peer answered, and never with another body.
      expect(Object.keys(result.peers.peers).sort()).toEqual(['bolt', 'coffeebuddy', 'floor']);
      for (const peer of Object.values<{ requests: number; wrongBody: number }>(
        result.peers.peers,
      )) {
        expect(peer.requests).toBeGreaterThan(0);
        expect(peer.wrongBody).toBe(0);
      }
      const { amplification } = result;
      expect(amplification.probes).toBeGreaterThan(0);
      expect(amplification.vaultRequests).toBeLessThanOrEqual(amplification.allowedPerDependency);
      expect(amplification.oryRequests).toBeLessThanOrEqual(amplification.allowedPerDependency);
      fs.rmSync(path.dirname(out), { recursive: true, force: true });
    },
    180_000,
  );
});
