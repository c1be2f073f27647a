-- Client rows carry a MAC under the vault's client key (DESIGN §9.2: the database is not trusted
-- for authorization), so the keys table gains the 'client' purpose. SQLite cannot change a CHECK
-- constraint in place: the table is rebuilt with the same rows.

CREATE TABLE keys_new (
    purpose    TEXT    NOT NULL CHECK (purpose IN ('data', 'fingerprint', 'audit', 'client')),
    version    INTEGER NOT NULL CHECK (version > 0),
    state      TEXT    NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'retired', 'destroyed')),
    algorithm  TEXT    NOT NULL,
    wrap_nonce BLOB    NOT NULL,
    wrapped    BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (purpose, version)
) STRICT;
INSERT INTO keys_new SELECT purpose, version, state, algorithm, wrap_nonce, wrapped, created_at FROM keys;
DROP TABLE keys;
ALTER TABLE keys_new RENAME TO keys;

-- NULL only in rows written before this migration; such a row authenticates nothing until
-- `vault upgrade` MACs it.
ALTER TABLE clients ADD COLUMN mac BLOB;

-- Revocations are read at start-up, so that a client row restored from before its revocation
-- is still refused (its MAC, from the vault's own earlier write, would verify).
CREATE INDEX audit_events_client_revoke ON audit_events (seq) WHERE action = 'client.revoke';
