-- The proxy's schema on PostgreSQL (the SQLite schema's twin). No card number is ever stored
-- here: payouts reference vault tokens and keep at most the last four digits.

CREATE TABLE clients (
    id             TEXT    PRIMARY KEY,
    name           TEXT    NOT NULL,
    tenant         TEXT    NOT NULL,
    scopes         TEXT    NOT NULL,
    key_hash       BYTEA    NOT NULL UNIQUE,
    webhook_url    TEXT,
    webhook_secret TEXT    NOT NULL,
    created_at     BIGINT NOT NULL,
    revoked_at     BIGINT
);

CREATE TABLE payouts (
    id                TEXT    PRIMARY KEY,
    tenant            TEXT    NOT NULL,
    client_id         TEXT    NOT NULL REFERENCES clients (id),
    idempotency_key   TEXT    NOT NULL,
    request_hash      BYTEA    NOT NULL,
    card_token        TEXT    NOT NULL,
    amount            BIGINT NOT NULL CHECK (amount > 0),
    currency          TEXT    NOT NULL,
    recipient_name    TEXT    NOT NULL,
    metadata          TEXT,
    confirm_mode      TEXT    NOT NULL,
    state             TEXT    NOT NULL,
    bank_session_id   TEXT    UNIQUE,
    bank_payout_id    TEXT,
    card_last4        TEXT,
    failure_code      TEXT,
    failure_message   TEXT,
    attention         TEXT,
    confirm_deadline  BIGINT,
    next_attempt_at   BIGINT NOT NULL,
    attempts          BIGINT NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    version           BIGINT NOT NULL
);

-- Same app, same Idempotency-Key: the same payout.
CREATE UNIQUE INDEX payouts_idempotency ON payouts (client_id, idempotency_key);
CREATE INDEX payouts_tenant_created ON payouts (tenant, id);
CREATE INDEX payouts_unfinished ON payouts (next_attempt_at)
    WHERE state NOT IN ('succeeded', 'failed', 'cancelled');

-- Every verified bank webhook, kept for the payout's history.
CREATE TABLE bank_events (
    seq             BIGSERIAL PRIMARY KEY,
    payout_id       TEXT,
    bank_session_id TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    received_at     BIGINT NOT NULL
);
CREATE INDEX bank_events_payout ON bank_events (payout_id);

-- App webhooks, written in the same transaction as the state change they report.
CREATE TABLE outbox (
    id              TEXT    PRIMARY KEY,
    payout_id       TEXT    NOT NULL REFERENCES payouts (id),
    client_id       TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    delivered_at    BIGINT,
    abandoned_at    BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE delivered_at IS NULL AND abandoned_at IS NULL;
