-- Schema v6: the ETag of the object version that could not be indexed, so that a reconcile run
-- (lib/core/reconcile.ts) does not retry a file that is still the same broken file every day, and
-- does retry it once it has been replaced. NULL for failures recorded before v6 (retried once).
ALTER TABLE index_failures ADD COLUMN etag text;

-- Reconciliation reads the index in the bucket listing's order (UTF-8 byte order), one listed page's
-- key range at a time: an index in that collation, whatever the database's default is.
CREATE INDEX images_source_key_bytes ON images (source, key COLLATE "C");
