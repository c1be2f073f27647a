-- After a fingerprint key rotation the rewrap job walks the tokens still fingerprinted under an
-- older version in token order, a batch at a time: (fingerprint_key_version, token) makes each
-- batch an index range.
CREATE INDEX tokens_fingerprint_key_version ON tokens (fingerprint_key_version, token);
