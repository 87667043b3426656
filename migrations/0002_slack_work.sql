-- Slack work carried by Knative Eventing: one row per CloudEvent (source, id), so that every
-- worker pod runs an event's handlers once. 0001's slack_events was never used by any code and is
-- replaced here.
DROP TABLE IF EXISTS slack_events;

CREATE TABLE slack_work (
  source text NOT NULL,
  id text NOT NULL,
  type text NOT NULL,
  -- claimed: a worker runs it until lease_until (another may take it over after);
  -- released: its last attempt failed and it may be claimed again;
  -- done: its handlers succeeded (deleted after the retention setting);
  -- dead: Knative gave up on it and delivered it to the dead-letter function.
  state text NOT NULL CHECK (state IN ('claimed', 'released', 'done', 'dead')),
  attempts integer NOT NULL DEFAULT 0,
  claimed_by text,
  lease_until timestamptz,
  last_error text,
  error_code text,
  error_dest text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  done_at timestamptz,
  PRIMARY KEY (source, id)
);

-- The retention sweep deletes done rows oldest first.
CREATE INDEX slack_work_done_at ON slack_work (done_at) WHERE state = 'done';
-- A draining worker releases what it still holds.
CREATE INDEX slack_work_claimed_by ON slack_work (claimed_by) WHERE state = 'claimed';
