import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import request from 'supertest';
import { parse } from 'yaml';
import { createApp } from '../functions/app';
import { createLogger } from '../lib/logger';
import { loadSettings } from '../lib/config/settings';
import { FakeClient } from '../testing/fakes';
import {
  SCHEMAS_DIR,
  SCHEMAS_PRESENT,
  loadValidators,
  modelProblems,
  schemaProblems,
  type Manifest,
} from './support/manifests';
import { freePort, REPO_ROOT } from '../testing/process';
import { headingAnchors } from './support/markdown';
import { exportedNames, metricNames } from './support/promql';
import { serveFunction } from '../testing/server';
import { itWhen, itWithCommand } from '../testing/tools';

const dir = path.join(REPO_ROOT, 'monitoring');
const read = (name: string) => fs.readFileSync(path.join(dir, name), 'utf8');
const rules = parse(read('rules.yaml'));
const prometheusRule = parse(read('prometheusrule.yaml')) as Manifest & {
  spec: { groups: unknown };
};
const dashboard = JSON.parse(read('dashboard.json'));

const promtool = (...args: string[]) => {
  const result = spawnSync('promtool', args, { cwd: dir, encoding: 'utf8' });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
};

const ruleExpressions = (): string[] =>
  rules.groups.flatMap((g: { rules: { expr: string }[] }) => g.rules.map((r) => r.expr));

const dashboardExpressions = (): string[] =>
  dashboard.panels.flatMap((p: { targets?: { expr: string }[] }) =>
    (p.targets ?? []).map((t) => t.expr),
  );

describe('alerting rules', () => {
  itWithCommand('promtool', 'apt-get install prometheus')('pass promtool check rules', () => {
    expect(promtool('check', 'rules', 'rules.yaml')).toMatchObject({ status: 0 });
  });

  itWithCommand('promtool', 'apt-get install prometheus')(
    'pass their promtool unit tests: each alert fires when it should and not otherwise',
    () => {
      const result = promtool('test', 'rules', 'rules.test.yaml');
      expect(result.output).toContain('SUCCESS');
      expect(result.status).toBe(0);
    },
  );

  it('cover every alert an operator needs, each tested', () => {
    const alerts = rules.groups.flatMap((g: { rules: { alert: string }[] }) =>
      g.rules.map((r) => r.alert),
    );
    expect(alerts.sort()).toEqual(
      [
        'CoffeeBuddyDependencyDown',
        'CoffeeBuddyEventDeliveryUnauthenticated',
        'CoffeeBuddyEventLoopLag',
        'CoffeeBuddyHighErrorRate',
        'CoffeeBuddyNotReady',
        'CoffeeBuddyRestarting',
        'CoffeeBuddySlackApiAuthErrors',
        'CoffeeBuddySlackApiRateLimited',
        'CoffeeBuddySlackDeadLetter',
        'CoffeeBuddySlackPublishFailing',
        'CoffeeBuddySlackSignatureRejected',
        'CoffeeBuddySlackWorkFailing',
      ].sort(),
    );
    const tests = parse(read('rules.test.yaml'));
    const tested = tests.tests.flatMap(
      (t: { alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }) => t.alert_rule_test,
    );
    for (const alert of alerts) {
      const cases = tested.filter((c: { alertname: string }) => c.alertname === alert);
      expect(cases.some((c: { exp_alerts: unknown[] }) => c.exp_alerts.length > 0)).toBe(true);
      expect(cases.some((c: { exp_alerts: unknown[] }) => c.exp_alerts.length === 0)).toBe(true);
    }
  });

  it('ship as a PrometheusRule with the same groups, valid against its npm model', () => {
    expect(prometheusRule.spec.groups).toEqual(rules.groups);
    expect(modelProblems([prometheusRule])).toEqual([[]]);
  });

  itWhen(
    SCHEMAS_PRESENT,
    `upstream schemas not found at ${SCHEMAS_DIR}: the PrometheusRule not checked for unknown fields`,
  )('ship as a PrometheusRule valid against its upstream CRD schema, strictly', () => {
    expect(schemaProblems(loadValidators(), prometheusRule)).toEqual([]);
  });
});

interface AlertRule {
  alert?: string;
  annotations?: Record<string, string>;
}
interface RuleGroups {
  groups: { name: string; rules: AlertRule[] }[];
}

/** Every alerting rule of a rule file's groups (recording rules have no `alert`). */
const alertsOf = (file: RuleGroups): AlertRule[] =>
  file.groups.flatMap((g) => g.rules).filter((r) => r.alert !== undefined);

/** The runbooks: docs/operations.md, whose headings' anchors the alerts link to. */
const OPERATIONS_DOC = 'docs/operations.md';

describe('runbooks', () => {
  const anchors = headingAnchors(fs.readFileSync(path.join(REPO_ROOT, OPERATIONS_DOC), 'utf8'));
  // Where the files say the runbooks are read; an overlay changes it (deploy/example/monitoring).
  const base = (prometheusRule.metadata.annotations ?? {})['coffeebuddy/runbooks'] as string;
  const files: [string, RuleGroups][] = [
    ['rules.yaml', rules as RuleGroups],
    ['prometheusrule.yaml', prometheusRule.spec as RuleGroups],
  ];

  it('are where the PrometheusRule says, the repository’s docs/operations.md', () => {
    expect(base).toMatch(new RegExp(`^https://[^#\\s]+/${OPERATIONS_DOC}$`));
  });

  it.each(files)(
    'every alert in %s links to a section of docs/operations.md that exists',
    (_name, file) => {
      const alerts = alertsOf(file);
      expect(alerts.length).toBeGreaterThan(0);
      for (const rule of alerts) {
        const url = rule.annotations?.runbook_url ?? '';
        const [where, section] = url.split('#');
        expect([rule.alert, where]).toEqual([rule.alert, base]);
        expect([rule.alert, anchors.includes(section ?? '')]).toEqual([rule.alert, true]);
      }
    },
  );

  it('are found by the anchor reader as GitHub names them', () => {
    expect(
      headingAnchors(
        '# Operating it\n## Slack work is failing: what do I do?\n```\n# not a heading\n```\n' +
          '### `kubectl` and SQL\n### Alerts\n### Alerts\n',
      ),
    ).toEqual([
      'operating-it',
      'slack-work-is-failing-what-do-i-do',
      'kubectl-and-sql',
      'alerts',
      'alerts-1',
    ]);
  });
});

/** The Slack work metrics, which only the worker and dead-letter functions export. */
const SLACK_WORK_METRICS = [
  'coffeebuddy_slack_work_total',
  'coffeebuddy_slack_handler_duration_seconds_bucket',
  'coffeebuddy_slack_dead_events',
  'coffeebuddy_slack_dead_removed_total',
];

/** The metric names the apps serve on /metrics, as fresh pods of each entry serve them. */
async function exportedByTheApps(): Promise<Set<string>> {
  const names = new Set<string>();
  for (const target of ['coffeebuddy', 'slackWorker', 'slackDeadLetter'] as const) {
    const app = createApp({
      target,
      // No PostgreSQL here: its readiness fails at once, its metrics are there all the same.
      settings: loadSettings({ PGPORT: String(await freePort()), PG_CONNECT_TIMEOUT_MS: '100' }),
      vaultClientFactory: () => new FakeClient(),
      oryClientFactory: () => new FakeClient(),
      logger: createLogger('error'),
    });
    try {
      const server = serveFunction(app.functions.metrics!);
      for (const name of exportedNames((await request(server).get('/metrics').expect(200)).text)) {
        names.add(name);
      }
    } finally {
      await app.close();
    }
  }
  return names;
}

describe('metric names in the dashboard and the rules', () => {
  const used = () =>
    new Set([...ruleExpressions(), ...dashboardExpressions()].flatMap(metricNames));

  it('are all exported by the apps, the Slack work metrics by the worker and dead-letter functions', async () => {
    const exported = await exportedByTheApps();
    expect(used().size).toBeGreaterThan(8);
    for (const name of SLACK_WORK_METRICS) expect(used()).toContain(name);
    expect([...used()].filter((name) => !exported.has(name))).toEqual([]);
  });

  it('are found by the extractor, which ignores functions, labels and keywords', () => {
    expect(
      metricNames(
        'sum by (le, route) (rate(a_bucket{job=~"$job", x="y"}[5m])) / on (instance) group_left b and bool c > 0.5',
      ).sort(),
    ).toEqual(['a_bucket', 'b', 'c']);
  });
});

describe('the dashboard', () => {
  it('is a Grafana dashboard with a panel for requests, latency, dependencies, the runtime, Slack work and Slack API calls', () => {
    const titles: string[] = dashboard.panels.map((p: { title: string }) => p.title);
    expect(dashboard.uid).toBe('coffeebuddy-runtime');
    for (const word of [
      'Requests',
      'Latency',
      'Dependency up',
      'Event-loop',
      'Memory',
      'CPU',
      'publish failures',
      'work outcomes',
      'handler latency',
      'dead events',
      'Slack API calls',
      'Slack API latency',
    ]) {
      expect(titles.some((t) => t.includes(word))).toBe(true);
    }
    const ids = dashboard.panels.map((p: { id: number }) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
  });
});
