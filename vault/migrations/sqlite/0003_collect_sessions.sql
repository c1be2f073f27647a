-- Collect sessions: the vault's own card form, opened by a platform's backend and completed by
-- a cardholder's browser (README "Collecting cards"). The client secret is kept only as its
-- hash; every field fixed at creation is covered by `mac` (under the client key), so a session
-- row written or edited outside the vault takes no card.

CREATE TABLE collect_sessions (
    id              TEXT    PRIMARY KEY,
    tenant          TEXT    NOT NULL,
    created_by      TEXT    NOT NULL,
    secret_hash     BLOB    NOT NULL,
    allowed_origins TEXT    NOT NULL,
    name_required   INTEGER NOT NULL CHECK (name_required IN (0, 1)),
    metadata        TEXT,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    completed_at    INTEGER,
    token           TEXT,
    last4           TEXT,
    brand           TEXT,
    cardholder_name TEXT,
    mac             BLOB    NOT NULL,
    CHECK ((completed_at IS NULL) = (token IS NULL))
) STRICT;
