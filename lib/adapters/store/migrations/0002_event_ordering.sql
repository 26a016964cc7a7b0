-- Schema v2: ordering of object-store events per key. S3 delivers event notifications at least once
-- and in any order; the S3 sequencer orders the events of one key. images.sequencer (v1) holds the
-- sequencer of the event that wrote the row; a deletion leaves a tombstone with its sequencer, so a
-- late ObjectCreated never resurrects a deleted key and a late ObjectRemoved never deletes a newer
-- image. A newer ObjectCreated removes the tombstone.
CREATE TABLE image_tombstones (
  source text NOT NULL,
  key text NOT NULL,
  sequencer text NOT NULL,
  deleted_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (source, key)
);
-- For pruning old tombstones (once no delayed event can still arrive).
CREATE INDEX image_tombstones_deleted_at ON image_tombstones (deleted_at);
