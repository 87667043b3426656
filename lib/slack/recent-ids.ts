/**
 * Where Slack event ids already handled are remembered, to recognise a delivery seen before. In
 * memory (RecentIds) each pod knows only its own; with several pods, plug in a shared store.
 */
export interface SeenIds {
  /** Whether `id` was seen before (within the store's memory); records it either way. */
  checkAndRecord(id: string): boolean | Promise<boolean>;
}

/** A bounded set of recently seen ids: at most maxEntries, each forgotten after ttlMs. */
export class RecentIds implements SeenIds {
  private readonly seenAt = new Map<string, number>();

  constructor(
    private readonly maxEntries: number,
    private readonly ttlMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Whether `id` was seen within the TTL; records it either way. */
  checkAndRecord(id: string): boolean {
    const now = this.now();
    const at = this.seenAt.get(id);
    const seen = at !== undefined && now - at < this.ttlMs;
    // Re-inserting moves the id to the end: the map's order is oldest first.
    this.seenAt.delete(id);
    this.seenAt.set(id, now);
    for (const [oldest, when] of this.seenAt) {
      if (this.seenAt.size <= this.maxEntries && now - when < this.ttlMs) break;
      this.seenAt.delete(oldest);
    }
    return seen;
  }

  get size(): number {
    return this.seenAt.size;
  }
}
