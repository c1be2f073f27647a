-- Collect sessions: the vault's own card form, opened by a platform's backend and completed by
-- a cardholder's browser (README "Collecting cards"). The client secret is kept only as its
-- hash; every field fixed at creation is covered by `mac` (under the client key), so a session
-- row written or edited outside the vault takes no card.

CREATE TABLE collect_sessions (
    id              TEXT     PRIMARY KEY,
    tenant          TEXT     NOT NULL,
    created_by      TEXT     NOT NULL,
    secret_hash     BYTEA    NOT NULL,
    allowed_origins TEXT     NOT NULL,
    name_required   SMALLINT NOT NULL CHECK (name_required IN (0, 1)),
    metadata        TEXT,
    created_at      BIGINT   NOT NULL,
    expires_at      BIGINT   NOT NULL,
    completed_at    BIGINT,
    token           TEXT,
    last4           TEXT,
    brand           TEXT,
    cardholder_name TEXT,
    mac             BYTEA    NOT NULL,
    CHECK ((completed_at IS NULL) = (token IS NULL))
);
