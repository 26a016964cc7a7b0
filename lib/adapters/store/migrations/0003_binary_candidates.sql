-- Binary-quantised copies of the embeddings, for fast candidate search on PGlite (see README,
-- "Storage and search strategy"). Each bit is (embedding - centre) > 0, where centre is the mean
-- embedding of the gallery: CNN features are non-negative after ReLU, so quantising them uncentred
-- keeps only their sparsity pattern (measured recall@10 0.32 with 100 candidates, against 0.996
-- centred). Both stay NULL until the store decides to use them (PgVectorStore.optimise).
DO $$
BEGIN
  EXECUTE format('ALTER TABLE images ADD COLUMN embedding_bits bit(%s)', (SELECT dimension FROM ompf_store));
  EXECUTE format('ALTER TABLE ompf_store ADD COLUMN centre halfvec(%s)', (SELECT dimension FROM ompf_store));
END
$$;
