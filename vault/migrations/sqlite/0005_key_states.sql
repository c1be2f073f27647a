-- Key versions live through states (README "Key lifecycle"): `active` (the newest one seals),
-- `decrypt_only` (`vault keys retire`: opens what it sealed, seals nothing) and `destroyed`.
-- The first schema called the middle state 'retired'; SQLite cannot change a CHECK in place, so
-- the table is rebuilt with the same rows.

CREATE TABLE keys_new (
    purpose    TEXT    NOT NULL CHECK (purpose IN ('data', 'fingerprint', 'audit', 'client')),
    version    INTEGER NOT NULL CHECK (version > 0),
    state      TEXT    NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'decrypt_only', 'destroyed')),
    algorithm  TEXT    NOT NULL,
    wrap_nonce BLOB    NOT NULL,
    wrapped    BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (purpose, version)
) STRICT;
INSERT INTO keys_new
    SELECT purpose, version, CASE state WHEN 'retired' THEN 'decrypt_only' ELSE state END,
           algorithm, wrap_nonce, wrapped, created_at
    FROM keys;
DROP TABLE keys;
ALTER TABLE keys_new RENAME TO keys;
