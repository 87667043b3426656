// The dead-letter replay: `node dist/replay.cjs` in the image, `npm run replay --` in a checkout.
// Publishes dead Slack events (slack_work) again to the Broker (K_SINK), all, by type or by id,
// and marks them replayed so that a worker does each once. Prints one line an event and a summary
// on stdout (logs go to stderr); exits 0 when every selected event was published, 1 when one was
// not or the run failed, 2 for bad arguments, 78 for bad settings.
import { parseArgs } from 'node:util';
import { Registry } from 'prom-client';
import { buildPostgresClient } from '../lib/clients/postgres';
import { buildVaultClient } from '../lib/clients/vault';
import { parseCeOverrides } from '../lib/config/formats';
import { EXIT_CONFIG, SettingsError, loadSettings, type Settings } from '../lib/config/settings';
import { reasonOf } from '../lib/errors';
import { MAX_ID_LENGTH } from '../lib/eventing/event';
import { CloudEventPublisher } from '../lib/eventing/publisher';
import { createLogger } from '../lib/logger';
import { SLACK_EVENT_TYPE_PREFIX, SLACK_INTERACTION_TYPE_PREFIX } from '../lib/slack/cloud-events';
import { DeadLetterStore, type DeadSelection } from '../lib/slack/dead-store';
import { replayDeadEvents } from '../lib/slack/replay';

const EXIT_FAILED = 1;
const EXIT_USAGE = 2;
const DEFAULT_BATCH_SIZE = 100;
const MAX_BATCH_SIZE = 1000;
const DEFAULT_MAX_FAILURES = 10;

const USAGE = `usage: node dist/replay.cjs (--all | --type <type> | --id <id> [--id <id> ...])
                          [--dry-run] [--batch-size N] [--max-failures N]
  --all            every dead event
  --type <type>    dead events of one type (com.slack.event.<type>, com.slack.interaction.<type>,
                   com.slack.command.<name>)
  --id <id>        the dead event with this CloudEvent id (repeat for more)
  --dry-run        print what would be replayed; publish and mark nothing (K_SINK not needed)
  --batch-size N   dead events read at a time (1-${MAX_BATCH_SIZE}, default ${DEFAULT_BATCH_SIZE})
  --max-failures N stop after N events could not be published (default ${DEFAULT_MAX_FAILURES})
Publishes to K_SINK (the Broker's ingress), each within SLACK_PUBLISH_TIMEOUT_MS; reads PG* settings.`;

class UsageError extends Error {}

interface Arguments {
  selection: DeadSelection;
  dryRun: boolean;
  batchSize: number;
  maxFailures: number;
}

function count(text: string | undefined, name: string, fallback: number, max: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < 1 || value > max) {
    throw new UsageError(`--${name}: a whole number from 1 to ${max}`);
  }
  return value;
}

function parse(argv: string[]): Arguments {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      all: { type: 'boolean' },
      type: { type: 'string' },
      id: { type: 'string', multiple: true },
      'dry-run': { type: 'boolean' },
      'batch-size': { type: 'string' },
      'max-failures': { type: 'string' },
    },
  });
  const chosen = [values.all === true, values.type !== undefined, values.id !== undefined];
  if (chosen.filter(Boolean).length !== 1) {
    throw new UsageError('choose one of --all, --type, --id');
  }
  const { type, id: ids } = values;
  if (
    type !== undefined &&
    !type.startsWith(SLACK_EVENT_TYPE_PREFIX) &&
    !type.startsWith(SLACK_INTERACTION_TYPE_PREFIX)
  ) {
    throw new UsageError(
      `--type: ${SLACK_EVENT_TYPE_PREFIX}<type> or ${SLACK_INTERACTION_TYPE_PREFIX}<type>`,
    );
  }
  if (ids?.some((id) => id === '' || id.length > MAX_ID_LENGTH)) {
    throw new UsageError(`--id: 1 to ${MAX_ID_LENGTH} characters`);
  }
  return {
    selection: { ...(type === undefined ? {} : { type }), ...(ids === undefined ? {} : { ids }) },
    dryRun: values['dry-run'] === true,
    batchSize: count(values['batch-size'], 'batch-size', DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE),
    maxFailures: count(values['max-failures'], 'max-failures', DEFAULT_MAX_FAILURES, 1_000_000),
  };
}

function settingsFor(dryRun: boolean): Settings {
  const settings = loadSettings(process.env);
  if (!dryRun && settings.K_SINK === '') {
    throw new SettingsError(["K_SINK: set it to the Broker's ingress URL to publish to"]);
  }
  return settings;
}

async function main(): Promise<number> {
  let args: Arguments;
  let settings: Settings;
  try {
    args = parse(process.argv.slice(2));
    settings = settingsFor(args.dryRun);
  } catch (error) {
    if (error instanceof SettingsError) {
      process.stderr.write(`coffeebuddy-replay: ${error.message}\n`);
      return EXIT_CONFIG;
    }
    // parseArgs' own errors (an unknown flag, a missing value) are usage errors too; their
    // messages quote only the command line.
    const message = error instanceof Error ? error.message : 'bad arguments';
    process.stderr.write(`coffeebuddy-replay: ${message}\n${USAGE}\n`);
    return EXIT_USAGE;
  }
  // Logs on stderr: stdout is the report a person reads.
  const logger = createLogger(settings.LOG_LEVEL, (line) => process.stderr.write(`${line}\n`));
  const vault = buildVaultClient(settings);
  const db = buildPostgresClient(
    { ...settings, PG_POOL_MAX: 1 },
    { vault, logger, registry: new Registry() },
  );
  const publisher = args.dryRun
    ? undefined
    : new CloudEventPublisher({
        sink: settings.K_SINK,
        extensions: parseCeOverrides(settings.K_CE_OVERRIDES),
        timeoutMs: settings.SLACK_PUBLISH_TIMEOUT_MS,
        logger,
        observe: () => undefined,
      });
  const print = (line: string) => process.stdout.write(`${line}\n`);
  try {
    const report = await replayDeadEvents(args.selection, {
      store: new DeadLetterStore(db),
      publisher,
      batchSize: args.batchSize,
      maxFailures: args.maxFailures,
      print,
    });
    const verb = args.dryRun ? 'would replay' : 'replayed';
    print(
      `${verb} ${report.replayed}, failed ${report.failed}` +
        (report.stopped ? ` (stopped after ${args.maxFailures} failures)` : ''),
    );
    return report.failed === 0 ? 0 : EXIT_FAILED;
  } catch (error) {
    print(`replay stopped: ${reasonOf(error)}`);
    return EXIT_FAILED;
  } finally {
    publisher?.close();
    await db.close();
    vault.close?.();
  }
}

void main().then((code) => {
  process.exitCode = code;
});
