import {
  COMPONENT_OK,
  componentHealth,
  type ComponentHealth,
  type HealthCheckClient,
} from './health';

export interface ReadinessReport {
  ready: boolean;
  components: Record<string, ComponentHealth>;
}

/** Called after every finished dependency check (not for cached answers). */
export type CheckListener = (
  component: string,
  health: ComponentHealth,
  previous: ComponentHealth | undefined,
) => void;

export interface ReadinessCheckerOptions {
  components: Readonly<Record<string, HealthCheckClient>>;
  /** How long a finished check's result is reused. */
  ttlMs: number;
  /** Longest check() may take; a check still running then counts as unavailable. */
  timeoutMs: number;
  /** Monotonic milliseconds; injectable so tests can move time. */
  now?: () => number;
  onCheck?: CheckListener;
}

interface Slot {
  readonly name: string;
  readonly client: HealthCheckClient;
  result?: ComponentHealth;
  resultAt: number;
  inflight?: Promise<ComponentHealth>;
  inflightAt: number;
  /** Identifies the newest check, so a late answer from an abandoned one is ignored. */
  generation: number;
}

/**
 * Decides whether the service is ready by asking its dependencies, protecting them from probe
 * storms: one in-flight check per dependency shared by all callers, results reused for ttlMs, and
 * every answer given within timeoutMs.
 */
export class ReadinessChecker {
  private readonly slots: Slot[];
  private readonly ttlMs: number;
  private readonly timeoutMs: number;
  private readonly now: () => number;
  private readonly onCheck: CheckListener | undefined;
  /** Counts stored results; the last report is reused while no result has changed. */
  private version = 0;
  private lastReport: { version: number; report: ReadinessReport } | undefined;

  constructor(options: ReadinessCheckerOptions) {
    this.slots = Object.entries(options.components).map(([name, client]) => ({
      name,
      client,
      resultAt: Number.NEGATIVE_INFINITY,
      inflightAt: Number.NEGATIVE_INFINITY,
      generation: 0,
    }));
    this.ttlMs = options.ttlMs;
    this.timeoutMs = options.timeoutMs;
    this.now = options.now ?? (() => performance.now());
    this.onCheck = options.onCheck;
  }

  /** The last report while every result in it is fresh, at once; otherwise undefined. */
  peek(): ReadinessReport | undefined {
    const now = this.now();
    const last = this.lastReport;
    if (last?.version !== this.version) return undefined;
    return this.slots.every((slot) => this.isFresh(slot, now)) ? last.report : undefined;
  }

  async check(): Promise<ReadinessReport> {
    const cached = this.peek();
    if (cached !== undefined) return cached;
    const now = this.now();
    const components: Record<string, ComponentHealth> = {};
    const pending: { name: string; result: Promise<ComponentHealth> }[] = [];
    for (const slot of this.slots) {
      if (this.isFresh(slot, now)) {
        components[slot.name] = slot.result;
      } else {
        pending.push({ name: slot.name, result: this.refresh(slot, now) });
      }
    }
    if (pending.length > 0) {
      const answers = await this.withinDeadline(pending.map((p) => p.result));
      pending.forEach(({ name }, i) => {
        components[name] = answers[i] ?? this.timedOut();
      });
    }
    const ready = Object.values(components).every((c) => c.status === COMPONENT_OK);
    const report = { ready, components };
    // Kept for peek() only if it shows exactly the stored results: no timeout stands in for one.
    if (this.slots.every((slot) => components[slot.name] === slot.result)) {
      this.lastReport = { version: this.version, report };
    }
    return report;
  }

  private isFresh(slot: Slot, now: number): slot is Slot & { result: ComponentHealth } {
    return slot.result !== undefined && now - slot.resultAt < this.ttlMs;
  }

  /** Joins the check in flight, or starts one; a check older than the timeout is abandoned. */
  private refresh(slot: Slot, now: number): Promise<ComponentHealth> {
    if (slot.inflight !== undefined && now - slot.inflightAt <= this.timeoutMs) {
      return slot.inflight;
    }
    const generation = ++slot.generation;
    slot.inflightAt = now;
    const run = Promise.resolve()
      .then(() => slot.client.healthCheck())
      .catch(() => componentHealth(0, 'health check failed'))
      .then((health) => {
        if (slot.generation === generation) {
          const previous = slot.result;
          slot.result = health;
          slot.resultAt = this.now();
          this.version += 1;
          slot.inflight = undefined;
          this.onCheck?.(slot.name, health, previous);
        }
        return health;
      });
    slot.inflight = run;
    return run;
  }

  /** Settles each promise or gives undefined for it once timeoutMs have passed. */
  private async withinDeadline<T>(promises: Promise<T>[]): Promise<(T | undefined)[]> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => {
        resolve(undefined);
      }, this.timeoutMs);
    });
    try {
      return await Promise.all(promises.map((p) => Promise.race([p, deadline])));
    } finally {
      clearTimeout(timer);
    }
  }

  private timedOut(): ComponentHealth {
    return componentHealth(this.timeoutMs, `timeout after ${this.timeoutMs} ms`);
  }
}
