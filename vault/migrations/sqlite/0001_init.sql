-- The vault's schema. Card numbers exist here only as AES-256-GCM ciphertext; the clear columns
-- hold at most BIN and last four, stored apart so no row spells out a longer digit run.

CREATE TABLE keys (
    purpose    TEXT    NOT NULL CHECK (purpose IN ('data', 'fingerprint', 'audit')),
    version    INTEGER NOT NULL CHECK (version > 0),
    state      TEXT    NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'retired', 'destroyed')),
    algorithm  TEXT    NOT NULL,
    wrap_nonce BLOB    NOT NULL,
    wrapped    BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (purpose, version)
) STRICT;

CREATE TABLE clients (
    id         TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    tenant     TEXT    NOT NULL,
    scopes     TEXT    NOT NULL,
    key_hash   BLOB    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;

CREATE TABLE tokens (
    token                   TEXT    PRIMARY KEY,
    tenant                  TEXT    NOT NULL,
    fingerprint             BLOB    NOT NULL,
    fingerprint_key_version INTEGER NOT NULL,
    bin                     TEXT    NOT NULL,
    brand                   TEXT    NOT NULL,
    last4                   TEXT    NOT NULL,
    pan_length              INTEGER NOT NULL,
    exp_month               INTEGER,
    exp_year                INTEGER,
    algorithm               TEXT    NOT NULL,
    key_version             INTEGER NOT NULL,
    nonce                   BLOB    NOT NULL,
    ciphertext              BLOB    NOT NULL,
    created_at              INTEGER NOT NULL,
    expires_at              INTEGER
) STRICT;

-- Same card, same tenant, same token.
CREATE UNIQUE INDEX tokens_tenant_fingerprint ON tokens (tenant, fingerprint);
CREATE INDEX tokens_expires_at ON tokens (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX tokens_key_version ON tokens (key_version);

CREATE TABLE audit_events (
    seq         INTEGER PRIMARY KEY,
    occurred_at INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    tenant      TEXT,
    action      TEXT    NOT NULL,
    token       TEXT,
    purpose     TEXT,
    outcome     TEXT    NOT NULL,
    request_id  TEXT,
    detail      TEXT,
    mac         BLOB    NOT NULL
) STRICT;
