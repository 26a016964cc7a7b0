-- Schema v7: each image's 64-bit perceptual hash (pHash, PreparedImage.perceptualHash), which confirms
-- a near-duplicate that the model's vectors alone place too far apart (heavy JPEG, small resizes, text
-- overlays: lib/core/duplicates.ts). Read only along the neighbour lists, so it needs no index. NULL
-- for images indexed before v7 until they are indexed again (`ompf index --force`, or a re-index).
ALTER TABLE images ADD COLUMN perceptual_hash bit(64);
