import { RecentIds } from '../../lib/slack/recent-ids';

describe('RecentIds', () => {
  it('remembers ids for the TTL', () => {
    const clock = { now: 0 };
    const ids = new RecentIds(100, 1000, () => clock.now);
    expect(ids.checkAndRecord('Ev1')).toBe(false);
    clock.now = 999;
    expect(ids.checkAndRecord('Ev1')).toBe(true);
    clock.now = 2000;
    expect(ids.checkAndRecord('Ev1')).toBe(false);
  });

  it('keeps at most maxEntries, forgetting the oldest', () => {
    const ids = new RecentIds(3, 60_000, () => 0);
    for (const id of ['a', 'b', 'c', 'd']) ids.checkAndRecord(id);
    expect(ids.size).toBe(3);
    expect(ids.checkAndRecord('a')).toBe(false);
    expect(ids.checkAndRecord('d')).toBe(true);
  });

  it('stays bounded under a flood of distinct ids', () => {
    const ids = new RecentIds(1000, 60_000, () => 0);
    for (let i = 0; i < 50_000; i += 1) ids.checkAndRecord(`Ev${i}`);
    expect(ids.size).toBe(1000);
  });

  it('drops expired ids as new ones arrive', () => {
    const clock = { now: 0 };
    const ids = new RecentIds(1000, 100, () => clock.now);
    for (let i = 0; i < 10; i += 1) ids.checkAndRecord(`old${i}`);
    clock.now = 500;
    ids.checkAndRecord('new');
    expect(ids.size).toBe(1);
  });
});
