/**
 * The system suite's one allowance for wall-clock bounds: what a shared two-core machine may add
 * (scheduling, garbage collection, another job's load) to a deadline the runtime documents. Every
 * timed assertion is "documented bound + SYSTEM_TOLERANCE_MS"; the unit suite has none.
 */
export const SYSTEM_TOLERANCE_MS = 500;
