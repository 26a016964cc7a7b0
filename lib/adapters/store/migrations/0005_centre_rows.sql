-- Schema v5: how many images the binary strategy's centre was learned from. optimise() learns it again
-- (and re-quantises every row) once the gallery has doubled since, so the sign bits of a store that
-- switched to binary candidates small keep splitting the gallery it has grown into. NULL for a centre
-- learned before v5: the next optimise() learns it again.
ALTER TABLE ompf_store ADD COLUMN centre_rows integer;
