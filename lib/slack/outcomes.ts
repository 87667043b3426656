/** Slack's three request URLs, /slack/{kind}. */
export const SLACK_KINDS = ['commands', 'events', 'interactions'] as const;
export type SlackKind = (typeof SLACK_KINDS)[number];

/** What became of a Slack request: the `outcome` label of coffeebuddy_slack_requests_total. */
export const SLACK_OUTCOMES = [
  'ok',
  'unsigned',
  'bad_signature',
  'stale',
  'too_large',
  'ssl_check',
  'url_verification',
  'retry_duplicate',
  'invalid_payload',
  'not_configured',
  'secret_unavailable',
  'handler_error',
  'rate_limited',
  'overloaded',
  'publish_failed',
  'unhandled',
] as const;
export type SlackOutcome = (typeof SLACK_OUTCOMES)[number];

/** What the Slack worker took: the `kind` label of coffeebuddy_slack_work_total. */
export const WORK_KINDS = ['events', 'interactions', 'commands', 'unknown'] as const;
export type WorkKind = (typeof WORK_KINDS)[number];

/** What became of an event the worker or the dead-letter function took. */
export const WORK_OUTCOMES = [
  'done',
  'duplicate',
  'busy',
  'failed',
  'rate_limited',
  'invalid',
  'unavailable',
  'dead_lettered',
  'ignored',
  'overloaded',
] as const;
export type WorkOutcome = (typeof WORK_OUTCOMES)[number];

/** How one event's handlers ended: the `outcome` label of the handler histogram. */
export const HANDLER_OUTCOMES = ['done', 'failed', 'rate_limited'] as const;
export type HandlerOutcome = (typeof HANDLER_OUTCOMES)[number];
