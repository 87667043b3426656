import fs from 'node:fs';
import path from 'node:path';
import { signSlackRequest, verifySlackSignature } from '../../lib/slack/signature';
import {
  REPO_ROOT,
  requireBuild,
  startCoffeebuddy,
  type RunningProcess,
} from '../../testing/process';
import {
  startOryStandIn,
  startVaultStandIn,
  type OryStandIn,
  type VaultStandIn,
} from '../../testing/standins';
import { itWhen } from '../../testing/tools';

/**
 * Real request bodies from Slack's SDK test suites, read in place from ../shared/fixtures/slack
 * (upstream data, never copied here), sent signed to the production entry.
 */

const FIXTURES_DIR = path.resolve(
  process.env.SLACK_FIXTURES_DIR ?? path.join(REPO_ROOT, '..', 'shared', 'fixtures', 'slack'),
);
const PRESENT = fs.existsSync(FIXTURES_DIR);
const SECRET = 'fixtures-secret';

interface Fixture {
  id: string;
  kind: string;
  endpoint?: string;
  content_type?: string;
  body: string;
  signing_secret?: string;
  timestamp?: string;
  signature?: string;
}

const fixtures: Fixture[] = PRESENT
  ? fs
      .readdirSync(FIXTURES_DIR)
      .filter((name) => name.endsWith('.json'))
      .sort()
      .map((name) => JSON.parse(fs.readFileSync(path.join(FIXTURES_DIR, name), 'utf8')) as Fixture)
  : [];
const requests = fixtures.filter((f) => f.endpoint !== undefined);
const withFixtures = itWhen(
  PRESENT,
  `Slack fixtures not found at ${FIXTURES_DIR}: real Slack request shapes not checked`,
);

/** The kinds of real request there are; each, signed, is answered 200. */
const KINDS = [
  'slash_command',
  'ssl_check',
  'url_verification',
  'event_callback',
  'block_actions',
  'message_action',
  'shortcut',
  'view_submission',
];

describe('real Slack requests (Slack SDK test-suite bodies)', () => {
  let vault: VaultStandIn;
  let ory: OryStandIn;
  let server: RunningProcess | undefined;

  beforeAll(async () => {
    if (!PRESENT) return;
    requireBuild();
    vault = await startVaultStandIn();
    ory = await startOryStandIn();
    server = await startCoffeebuddy(vault.url, ory.url, {
      NODE_ENV: 'development',
      SLACK_SIGNING_SECRET: SECRET,
    });
  });
  afterAll(async () => {
    await server?.stop();
    if (PRESENT) await Promise.all([vault.close(), ory.close()]);
  });

  withFixtures('are all here, each of a kind this test knows', () => {
    expect(requests.length).toBeGreaterThanOrEqual(20);
    for (const fixture of requests) expect(KINDS).toContain(fixture.kind);
  });

  withFixtures('Slack’s published signing example verifies, and fails when a byte changes', () => {
    const example = fixtures.find((f) => f.kind === 'signing_example')!;
    const request = {
      timestamp: example.timestamp,
      signature: example.signature,
      body: Buffer.from(example.body),
    };
    const at = Number(example.timestamp);
    expect(verifySlackSignature(example.signing_secret!, request, at)).toBe('ok');
    const changed = { ...request, body: Buffer.from(`${example.body} `) };
    expect(verifySlackSignature(example.signing_secret!, changed, at)).toBe('bad_signature');
  });

  withFixtures(
    'each is answered as its kind, signed; and refused unsigned unless ssl_check',
    async () => {
      for (const fixture of requests) {
        const timestamp = String(Math.floor(Date.now() / 1000));
        const headers = { 'Content-Type': fixture.content_type ?? 'application/json' };
        const res = await fetch(`${server!.url}${fixture.endpoint}`, {
          method: 'POST',
          headers: {
            ...headers,
            'X-Slack-Request-Timestamp': timestamp,
            'X-Slack-Signature': signSlackRequest(SECRET, timestamp, fixture.body),
          },
          body: fixture.body,
        });
        expect([fixture.id, res.status]).toEqual([fixture.id, 200]);
        if (fixture.kind === 'url_verification') {
          expect(await res.json()).toEqual({
            challenge: (JSON.parse(fixture.body) as { challenge: string }).challenge,
          });
        }
        const unsigned = await fetch(`${server!.url}${fixture.endpoint}`, {
          method: 'POST',
          headers,
          body: fixture.body,
        });
        const unsignedStatus = fixture.kind === 'ssl_check' ? 200 : 401;
        expect([fixture.id, 'unsigned', unsigned.status]).toEqual([
          fixture.id,
          'unsigned',
          unsignedStatus,
        ]);
      }
    },
  );
});
