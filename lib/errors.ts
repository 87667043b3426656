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

/** A failure as a person on call reads it: what it is, what it says, and where it came from. */
export interface ErrorDetails {
  name: string;
  message: string;
  /** The top stack frames (`at fn (file:line:col)`), innermost first. */
  stack: string[];
}

/** Longest message kept: a message is one line of explanation, not a payload. */
const MAX_MESSAGE_LENGTH = 1000;

/**
 * The name, message (bounded) and top `frames` stack frames of a handler's failure: the policy for
 * failures of CoffeeBuddy's own features only, whose log lines pass the redactor (other failures
 * keep errorName). A value thrown that is not an Error is named by its type.
 */
export function errorDetails(error: unknown, frames = 5): ErrorDetails {
  if (!(error instanceof Error)) {
    const message = typeof error === 'string' ? error : '';
    return { name: errorName(error), message: message.slice(0, MAX_MESSAGE_LENGTH), stack: [] };
  }
  const stack = (error.stack ?? '')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.startsWith('at '))
    .slice(0, frames);
  return { name: error.name, message: error.message.slice(0, MAX_MESSAGE_LENGTH), stack };
}
