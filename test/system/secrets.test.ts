import { ENTRY, requireBuild, runToExit } from '../../testing/process';
import { CANARIES, expectNoCanary } from '../support/canaries';

/** Secrets through the built entries (the tests in-process are test/secrets.test.ts). */
describe('secrets never leave', () => {
  it('not in a failed start-up’s output', async () => {
    requireBuild();
    const { code, stdout, stderr } = await runToExit([ENTRY], {
      NODE_ENV: 'production',
      VAULT_ADDR: 'http://127.0.0.1:9',
      ORY_URL: 'http://127.0.0.1:9',
      VAULT_TOKEN: CANARIES.VAULT_TOKEN,
      VAULT_K8S_ROLE: 'coffeebuddy',
      SLACK_SIGNING_SECRET: CANARIES.SLACK_SIGNING_SECRET,
      SLACK_BOT_TOKEN: CANARIES.SLACK_BOT_TOKEN,
      PGPASSWORD: CANARIES.PGPASSWORD,
    });
    expect(code).toBe(78);
    expect(stderr).toContain('SLACK_SIGNING_SECRET: not allowed in production');
    expect(stderr).toContain('SLACK_BOT_TOKEN: not allowed in production');
    expectNoCanary('start-up output', stdout + stderr);
    const migrate = await runToExit(['dist/migrate.cjs'], {
      NODE_ENV: 'production',
      VAULT_ADDR: 'http://127.0.0.1:9',
      ORY_URL: 'http://127.0.0.1:9',
      PGPASSWORD: CANARIES.PGPASSWORD,
    });
    expect(migrate.code).toBe(78);
    expect(migrate.stderr).toContain('PGPASSWORD: not allowed in production');
    expectNoCanary('the migration Job’s start-up output', migrate.stdout + migrate.stderr);
  });
});
