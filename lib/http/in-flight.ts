import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Admission, Refusal } from './router';

/** What a refused sender is asked to wait, in seconds: a place frees as soon as a request ends. */
export const IN_FLIGHT_RETRY_AFTER_SECONDS = 1;

const FULL: Refusal = {
  status: 429,
  error: 'too many requests in flight',
  headers: { 'Retry-After': String(IN_FLIGHT_RETRY_AFTER_SECONDS) },
};

/** One admitted request's place: held by its answer and by the work begun for it. */
interface Place {
  holders: number;
}

/**
 * At most `max` requests at once on the routes that share it, each counted from its admission
 * (before a byte of its body is read) until its answer has closed and the work begun for it has
 * ended, so that a client hanging up frees nothing while its body is still being worked on.
 * Past it, 429 with `Retry-After`.
 */
export class InFlightLimit {
  private current = 0;
  private readonly places = new WeakMap<IncomingMessage, Place>();

  constructor(
    readonly max: number,
    /** Told of each refused request, before it is answered. */
    private readonly onRefused: (req: IncomingMessage) => void,
  ) {
    if (!Number.isSafeInteger(max) || max < 1) throw new Error('max must be a positive integer');
  }

  /** Requests holding a place now. */
  get inFlight(): number {
    return this.current;
  }

  /** A route's `admit`: takes a place for the request until its response closes, or refuses it. */
  readonly admit = (req: IncomingMessage, res: ServerResponse): Admission => {
    if (this.current >= this.max) {
      this.onRefused(req);
      return FULL;
    }
    this.current += 1;
    const place: Place = { holders: 1 };
    this.places.set(req, place);
    res.once('close', () => {
      this.release(place);
    });
    return undefined;
  };

  /**
   * Runs `work` for a request, keeping its place until the work settles. Undefined, and nothing
   * run, when the request's place is already given back: its client has gone, and work begun now
   * would hold memory no place counts. A request this limit did not admit (a function served
   * alone) runs as it is.
   */
  async during<T>(req: IncomingMessage, work: () => Promise<T>): Promise<T | undefined> {
    const place = this.places.get(req);
    if (place === undefined) return work();
    if (place.holders === 0) return undefined;
    place.holders += 1;
    try {
      return await work();
    } finally {
      this.release(place);
    }
  }

  private release(place: Place): void {
    place.holders -= 1;
    if (place.holders === 0) this.current -= 1;
  }
}
