-- The rewrap job walks the tokens still sealed under one old data key version in token order,
-- a batch at a time: (key_version, token) makes each batch an index range.
DROP INDEX tokens_key_version;
CREATE INDEX tokens_key_version ON tokens (key_version, token);
