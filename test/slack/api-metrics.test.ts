import { Registry } from 'prom-client';
import {
  createSlackApiMetrics,
  FIRST_METHOD,
  isSlackMethod,
  SLACK_API_OUTCOMES,
} from '../../lib/slack/api-metrics';
import { metricValue } from '../../testing/metrics-text';

describe('isSlackMethod', () => {
  it('takes Slack’s method names, up to four dots deep', () => {
    for (const method of [
      'chat.postMessage',
      'oauth.v2.access',
      'admin.conversations.restrictAccess.addGroup',
      'a.b.c.d.e',
    ]) {
      expect([method, isSlackMethod(method)]).toEqual([method, true]);
    }
  });

  it('refuses what is not one: a URL, a path, no dot, five dots, a bad first letter', () => {
    for (const method of [
      'https://slack.com/api/chat.postMessage',
      '../chat.postMessage',
      'chat',
      'chat.',
      'chat..postMessage',
      'a.b.c.d.e.f',
      'Chat.postMessage',
      '1chat.postMessage',
      'chat.post-message',
      ' chat.postMessage',
      'chat.postMessage\n',
      '',
    ]) {
      expect([method, isSlackMethod(method)]).toEqual([method, false]);
    }
  });

  it('at most 64 characters, so that a label value stays bounded', () => {
    const named = (chars: number) => `chat.${'p'.repeat(chars - 'chat.'.length)}`;
    expect(isSlackMethod(named(64))).toBe(true);
    expect(isSlackMethod(named(65))).toBe(false);
  });
});

describe('createSlackApiMetrics', () => {
  it('the first method’s series exist at 0 from the start; each call counted and timed in seconds', async () => {
    const registry = new Registry();
    const metrics = createSlackApiMetrics(registry);
    const fresh = await registry.metrics();
    for (const outcome of SLACK_API_OUTCOMES) {
      expect(
        metricValue(fresh, 'coffeebuddy_slack_api_calls_total', { method: FIRST_METHOD, outcome }),
      ).toBe(0);
    }
    expect(
      metricValue(fresh, 'coffeebuddy_slack_api_duration_seconds_count', { method: FIRST_METHOD }),
    ).toBe(0);

    metrics.observeCall('users.info', 'rate_limited', 0.25);
    metrics.observeCall('users.info', 'ok', 0.5);
    const text = await registry.metrics();
    expect(
      metricValue(text, 'coffeebuddy_slack_api_calls_total', {
        method: 'users.info',
        outcome: 'rate_limited',
      }),
    ).toBe(1);
    expect(
      metricValue(text, 'coffeebuddy_slack_api_duration_seconds_count', { method: 'users.info' }),
    ).toBe(2);
    expect(
      metricValue(text, 'coffeebuddy_slack_api_duration_seconds_sum', { method: 'users.info' }),
    ).toBe(0.75);
  });
});
