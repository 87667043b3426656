import { Registry } from 'prom-client';
import { componentHealth } from '../lib/health';
import { PROCESS_FAULTS, createMetrics } from '../lib/metrics';
import { metricValue } from '../testing/metrics-text';

function metrics() {
  const registry = new Registry();
  return { registry, runtime: createMetrics(registry, { version: 'test' }) };
}

describe('createMetrics', () => {
  it('observes dependency checks in seconds: 250 ms is a sum of 0.25 in the 0.25 s bucket', async () => {
    const { registry, runtime } = metrics();
    runtime.observeCheck('vault', componentHealth(250));
    const text = await registry.metrics();
    const check = 'coffeebuddy_dependency_check_duration_seconds';
    expect(metricValue(text, `${check}_count`, { component: 'vault' })).toBe(1);
    expect(metricValue(text, `${check}_sum`, { component: 'vault' })).toBeCloseTo(0.25, 6);
    expect(metricValue(text, `${check}_bucket`, { component: 'vault', le: '0.1' })).toBe(0);
    expect(metricValue(text, `${check}_bucket`, { component: 'vault', le: '0.25' })).toBe(1);
  });

  it('starts process_faults_total at 0 for each kind, and counts each fault', async () => {
    const { registry, runtime } = metrics();
    const before = await registry.metrics();
    for (const kind of PROCESS_FAULTS) {
      expect([kind, metricValue(before, 'coffeebuddy_process_faults_total', { kind })]).toEqual([
        kind,
        0,
      ]);
    }
    runtime.observeFault('uncaught_exception');
    const after = await registry.metrics();
    expect(
      metricValue(after, 'coffeebuddy_process_faults_total', { kind: 'uncaught_exception' }),
    ).toBe(1);
    expect(
      metricValue(after, 'coffeebuddy_process_faults_total', { kind: 'unhandled_rejection' }),
    ).toBe(0);
  });
});
