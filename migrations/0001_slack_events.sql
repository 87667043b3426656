-- Slack events CoffeeBuddy has taken on, by Slack's event id, so that a redelivery of one already
-- taken is acknowledged without running it again; done_at is set when its work has finished.
CREATE TABLE slack_events (
  event_id text PRIMARY KEY,
  received_at timestamptz NOT NULL DEFAULT now(),
  done_at timestamptz
);
