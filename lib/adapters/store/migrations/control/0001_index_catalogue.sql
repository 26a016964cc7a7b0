-- The control schema (public) of a cloud stage's database: which index serves queries and which one is
-- being built beside it (re-index without downtime), the reconcile runs, and the last error of each
-- object event that failed (what the dead-letter listing shows). Each index is a store of its own in a
-- schema of its own (the migrations one level up), named by its model id.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE ompf_indexes (
  model_id text PRIMARY KEY,
  schema_name text NOT NULL UNIQUE,
  dimension integer NOT NULL,
  state text NOT NULL CHECK (state IN ('building', 'active', 'retired')),
  created_at timestamptz NOT NULL DEFAULT now(),
  activated_at timestamptz,
  retired_at timestamptz
);
-- At most one index answers queries, and at most one is being built.
CREATE UNIQUE INDEX ompf_indexes_one_active ON ompf_indexes ((true)) WHERE state = 'active';
CREATE UNIQUE INDEX ompf_indexes_one_building ON ompf_indexes ((true)) WHERE state = 'building';

CREATE TABLE ompf_reconcile_runs (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  model_id text NOT NULL,
  trigger text NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  listed integer NOT NULL DEFAULT 0,
  missing integer NOT NULL DEFAULT 0,
  changed integer NOT NULL DEFAULT 0,
  gone integer NOT NULL DEFAULT 0,
  unchanged integer NOT NULL DEFAULT 0,
  enqueued integer NOT NULL DEFAULT 0,
  switched boolean NOT NULL DEFAULT false,
  error text
);
CREATE INDEX ompf_reconcile_runs_recent ON ompf_reconcile_runs (started_at DESC);

-- One row per object event that threw (a retryable failure: database or S3 unavailable, a bug), by
-- SQS message id; deleted when the message finally succeeds. Written best-effort: when the database
-- itself is the failure, nothing can be written and the listing says so.
CREATE TABLE ompf_event_errors (
  message_id text PRIMARY KEY,
  source text,
  key text,
  error text NOT NULL,
  attempts integer NOT NULL DEFAULT 1,
  last_failed_at timestamptz NOT NULL DEFAULT now()
);
