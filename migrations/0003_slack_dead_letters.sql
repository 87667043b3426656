-- Dead letters that can be replayed: the event Knative gave up on is kept with its row (its other
-- attributes and its data, each as JSON text: text, not jsonb, so that any string a producer sent
-- is stored as sent), a new state `replayed` for an event published again to the Broker, and the
-- time of the dead letter, by which dead rows are bounded (retention and a row cap, oldest first).
ALTER TABLE slack_work
  -- When the last dead letter came; cleared when a worker claims the event again. Set on a row a
  -- worker still holds too: that row turns dead if the holder fails, done if it succeeds.
  ADD COLUMN dead_at timestamptz,
  -- The event's attributes other than specversion, id, source, type and Knative's error ones,
  -- as a JSON object of strings.
  ADD COLUMN event_attributes text,
  -- The event's data as JSON text, or NULL when it was not kept (larger than the bound).
  ADD COLUMN event_data text,
  -- When `npm run replay` last published it again, and how many times it has.
  ADD COLUMN replayed_at timestamptz,
  ADD COLUMN replays integer NOT NULL DEFAULT 0;

-- replayed: published to the Broker again; a worker may claim it.
ALTER TABLE slack_work DROP CONSTRAINT slack_work_state_check;
ALTER TABLE slack_work ADD CONSTRAINT slack_work_state_check
  CHECK (state IN ('claimed', 'released', 'done', 'dead', 'replayed'));

-- Dead rows oldest first (retention, row cap) and counted (the dead-letter gauge).
CREATE INDEX slack_work_dead_at ON slack_work (dead_at) WHERE dead_at IS NOT NULL;

-- Rows dead before this migration: their dead letter came at their last update.
UPDATE slack_work SET dead_at = updated_at WHERE state = 'dead';
