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
  'overloaded',
  'publish_failed',
] as const;
export type SlackOutcome = (typeof SLACK_OUTCOMES)[number];
