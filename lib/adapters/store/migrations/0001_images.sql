-- Schema v1. Parameters arrive as transaction-local settings set by the migrator (never spliced into
-- this text): ompf.model_id and ompf.dimension. The dimension is part of the column type
-- (halfvec(D)), so the table is created through format() with the value cast to an integer.
CREATE EXTENSION IF NOT EXISTS vector;

-- One row: which model (and so which dimension) this store was built with.
CREATE TABLE ompf_store (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  model_id text NOT NULL,
  dimension integer NOT NULL CHECK (dimension BETWEEN 1 AND 4000),
  created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO ompf_store (model_id, dimension)
VALUES (current_setting('ompf.model_id'), current_setting('ompf.dimension')::integer);

DO $$
BEGIN
  EXECUTE format(
    'CREATE TABLE images (
       id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
       source text NOT NULL,
       key text NOT NULL,
       content_hash text NOT NULL,
       etag text,
       version_id text,
       sequencer text,
       model_id text NOT NULL,
       embedding halfvec(%s) NOT NULL,
       width integer NOT NULL,
       height integer NOT NULL,
       bytes bigint NOT NULL,
       created_at timestamptz NOT NULL DEFAULT now(),
       updated_at timestamptz NOT NULL DEFAULT now(),
       UNIQUE (source, key)
     )',
    current_setting('ompf.dimension')::integer);
END
$$;

-- Keys that could not be indexed, with the reason, so failures are visible and not retried forever.
CREATE TABLE index_failures (
  source text NOT NULL,
  key text NOT NULL,
  content_hash text,
  reason text NOT NULL,
  failed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (source, key)
);
