-- The vault's schema on PostgreSQL (the SQLite schema's twin). Card numbers exist here only as
-- AES-256-GCM ciphertext; the clear columns hold at most BIN and last four.

CREATE TABLE keys (
    purpose    TEXT    NOT NULL CHECK (purpose IN ('data', 'fingerprint', 'audit')),
    version    BIGINT  NOT NULL CHECK (version > 0),
    state      TEXT    NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'retired', 'destroyed')),
    algorithm  TEXT    NOT NULL,
    wrap_nonce BYTEA   NOT NULL,
    wrapped    BYTEA   NOT NULL,
    created_at BIGINT  NOT NULL,
    PRIMARY KEY (purpose, version)
);

CREATE TABLE clients (
    id         TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    tenant     TEXT    NOT NULL,
    scopes     TEXT    NOT NULL,
    key_hash   BYTEA   NOT NULL UNIQUE,
    created_at BIGINT  NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE tokens (
    token                   TEXT    PRIMARY KEY,
    tenant                  TEXT    NOT NULL,
    fingerprint             BYTEA   NOT NULL,
    fingerprint_key_version BIGINT  NOT NULL,
    bin                     TEXT    NOT NULL,
    brand                   TEXT    NOT NULL,
    last4                   TEXT    NOT NULL,
    pan_length              SMALLINT NOT NULL,
    exp_month               SMALLINT,
    exp_year                INTEGER,
    algorithm               TEXT    NOT NULL,
    key_version             BIGINT  NOT NULL,
    nonce                   BYTEA   NOT NULL,
    ciphertext              BYTEA   NOT NULL,
    created_at              BIGINT  NOT NULL,
    expires_at              BIGINT
);

CREATE UNIQUE INDEX tokens_tenant_fingerprint ON tokens (tenant, fingerprint);
CREATE INDEX tokens_expires_at ON tokens (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX tokens_key_version ON tokens (key_version);

CREATE TABLE audit_events (
    seq         BIGINT  PRIMARY KEY,
    occurred_at BIGINT  NOT NULL,
    actor       TEXT    NOT NULL,
    tenant      TEXT,
    action      TEXT    NOT NULL,
    token       TEXT,
    purpose     TEXT,
    outcome     TEXT    NOT NULL,
    request_id  TEXT,
    detail      TEXT,
    mac         BYTEA   NOT NULL
);
