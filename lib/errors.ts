/** A request to a dependency that got no usable answer; the message is a reason a person can act on. */
export class UpstreamError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'UpstreamError';
  }
}

/** The reason an operation failed, from our own errors only: others may carry what must not leak. */
export function reasonOf(error: unknown): string {
  return error instanceof UpstreamError ? error.message : 'request failed';
}

/**
 * What a log line says of an error raised by code other than ours: its name only, since a message
 * may carry a secret, a body or a query. The one policy for logging a failure.
 */
export function errorName(error: unknown): string {
  return error instanceof Error ? error.name : `non-error thrown (${typeof error})`;
}
