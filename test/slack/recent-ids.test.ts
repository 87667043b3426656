import { RecentIds } from '../../lib/slack/recent-ids';

/** The in-process path's use: whether seen, then recorded either way. */
function checkAndRecord(ids: RecentIds, id: string): boolean {
  const seen = ids.has(id);
  ids.record(id);
  return seen;
}

describe('RecentIds', () => {
  it('remembers ids for the TTL', () => {
    const clock = { now: 0 };
    const ids = new RecentIds(100, 1000, () => clock.now);
    expect(checkAndRecord(ids, 'Ev1')).toBe(false);
    clock.now = 999;
    expect(checkAndRecord(ids, 'Ev1')).toBe(true);
    clock.now = 2000;
    expect(checkAndRecord(ids, 'Ev1')).toBe(false);
  });

  it('forgets an id exactly ttlMs after it was recorded, whenever that was', () => {
    const clock = { now: 5000 };
    const ids = new RecentIds(100, 1000, () => clock.now);
    ids.record('Ev1');
    clock.now = 5500;
    expect(ids.has('Ev1')).toBe(true);
    clock.now = 6000;
    expect(ids.has('Ev1')).toBe(false);
    // Recording another drops the expired one.
    ids.record('Ev2');
    expect(ids.size).toBe(1);
  });

  it('does not record an id it is only asked about', () => {
    const ids = new RecentIds(100, 1000, () => 0);
    expect(ids.has('Ev1')).toBe(false);
    expect(ids.has('Ev1')).toBe(false);
    expect(ids.size).toBe(0);
    ids.record('Ev1');
    expect(ids.has('Ev1')).toBe(true);
  });

  it('keeps at most maxEntries, forgetting the oldest', () => {
    const ids = new RecentIds(3, 60_000, () => 0);
    for (const id of ['a', 'b', 'c', 'd']) ids.record(id);
    expect(ids.size).toBe(3);
    expect(checkAndRecord(ids, 'a')).toBe(false);
    expect(checkAndRecord(ids, 'd')).toBe(true);
  });

  it('stays bounded under a flood of distinct ids', () => {
    const ids = new RecentIds(1000, 60_000, () => 0);
    for (let i = 0; i < 50_000; i += 1) ids.record(`Ev${i}`);
    expect(ids.size).toBe(1000);
  });

  it('drops expired ids as new ones arrive', () => {
    const clock = { now: 0 };
    const ids = new RecentIds(1000, 100, () => clock.now);
    for (let i = 0; i < 10; i += 1) ids.record(`old${i}`);
    clock.now = 500;
    ids.record('new');
    expect(ids.size).toBe(1);
  });
});
