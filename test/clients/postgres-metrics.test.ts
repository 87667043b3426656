import { Registry } from 'prom-client';
import { checkOperation, createPostgresMetrics } from '../../lib/clients/postgres-metrics';

describe('checkOperation', () => {
  it.each(['a', 'claim_event', 'migrate_apply_2', `a${'b'.repeat(47)}`])(
    'takes %j, a fixed name of up to 48 characters',
    (name) => {
      expect(() => {
        checkOperation(name);
      }).not.toThrow();
    },
  );

  it.each(['', '1st', '_x', 'Select', 'SELECT 1', 'select 1', 'x;', ' x', `a${'b'.repeat(48)}`])(
    'refuses %j as a label value',
    (name) => {
      expect(() => {
        checkOperation(name);
      }).toThrow('an operation name must match /^[a-z][a-z0-9_]{0,47}$/: a fixed name, not SQL');
    },
  );
});

describe('createPostgresMetrics', () => {
  it('shows the pool as scraped and each query in buckets from 1 ms to 10 s', async () => {
    const registry = new Registry();
    const pool = { total: 3, idle: 1, waiting: 2 };
    const metrics = createPostgresMetrics(registry, () => pool);
    metrics.observeQuery('claim', 'ok', 0.0007);
    metrics.observeQuery('claim', 'error', 12);
    let text = await registry.metrics();
    expect(text).toContain('coffeebuddy_db_pool_connections{state="total"} 3');
    expect(text).toContain('coffeebuddy_db_pool_connections{state="idle"} 1');
    expect(text).toContain('coffeebuddy_db_pool_connections{state="waiting"} 2');
    const bucket = (le: string, outcome: string) =>
      `coffeebuddy_db_query_duration_seconds_bucket{le="${le}",operation="claim",outcome="${outcome}"}`;
    expect(text).toContain(`${bucket('0.001', 'ok')} 1`);
    expect(text).toContain(`${bucket('10', 'error')} 0`);
    expect(text).toContain(`${bucket('+Inf', 'error')} 1`);
    const les = [...text.matchAll(/le="([^"]+)",operation="claim",outcome="ok"/g)].map((m) => m[1]);
    expect(les).toEqual([
      '0.001',
      '0.0025',
      '0.005',
      '0.01',
      '0.025',
      '0.05',
      '0.1',
      '0.25',
      '0.5',
      '1',
      '2.5',
      '5',
      '10',
      '+Inf',
    ]);
    pool.waiting = 0;
    text = await registry.metrics();
    expect(text).toContain('coffeebuddy_db_pool_connections{state="waiting"} 0');
  });
});
