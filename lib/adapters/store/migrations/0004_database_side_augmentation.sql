-- Schema v4: database-side augmentation (DBA), maintained by the store as images arrive and leave (see
-- PgVectorStore, "Database-side augmentation"). `embedding` stays the searched vector: the HNSW index,
-- the binary candidate bits and exact search all keep working on it unchanged. With DBA on it holds the
-- augmented vector, and the model's own output moves to raw_embedding; with DBA off (and for every row
-- written before v4) raw_embedding is NULL and `embedding` is the model output itself.
-- dba_neighbours: ids of the k rows nearest by raw cosine distance, nearest first (ties by id);
-- dba_distances: their raw cosine distances, in the same order (the last one is the row's radius: a new
-- image nearer than it enters the list). Kept as exact float8 so the comparisons that decide membership
-- are reproducible. The GIN index finds the rows that use a given image (on its overwrite or deletion).
-- No parameters: the dimension is read from ompf_store, as in v3.
DO $$
BEGIN
  EXECUTE format('ALTER TABLE images ADD COLUMN raw_embedding halfvec(%s)', (SELECT dimension FROM ompf_store));
END
$$;
ALTER TABLE images ADD COLUMN dba_neighbours bigint[] NOT NULL DEFAULT '{}';
ALTER TABLE images ADD COLUMN dba_distances double precision[] NOT NULL DEFAULT '{}';
CREATE INDEX images_dba_neighbours ON images USING gin (dba_neighbours);
