/**
 * Where Slack event ids already handled are remembered, to recognise a delivery seen before. In
 * memory (RecentIds) each pod knows only its own; with several pods, plug in a shared store.
 * Asking and recording are apart, so that an id is recorded only once its delivery succeeded.
 */
export interface SeenIds {
  /** Whether `id` was recorded before (within the store's memory). */
  has(id: string): boolean | Promise<boolean>;
  /** Remembers `id` as handled. */
  record(id: string): void | Promise<void>;
}

/** A bounded set of recently seen ids: at most maxEntries, each forgotten after ttlMs. */
export class RecentIds implements SeenIds {
  private readonly seenAt = new Map<string, number>();

  constructor(
    private readonly maxEntries: number,
    private readonly ttlMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  has(id: string): boolean {
    const at = this.seenAt.get(id);
    return at !== undefined && this.now() - at < this.ttlMs;
  }

  record(id: string): void {
    const now = this.now();
    // Re-inserting moves the id to the end: the map's order is oldest first.
    this.seenAt.delete(id);
    this.seenAt.set(id, now);
    for (const [oldest, when] of this.seenAt) {
      if (this.seenAt.size <= this.maxEntries && now - when < this.ttlMs) break;
      this.seenAt.delete(oldest);
    }
  }

  get size(): number {
    return this.seenAt.size;
  }
}
