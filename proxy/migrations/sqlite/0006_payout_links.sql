-- Payout links: a payout to a card the recipient enters on the vault's page (a standalone
-- collect session). No card data here either: the session id, its client secret sealed under
-- the proxy's key, and once completed the payout and the card's last four and brand. The fields
-- fixed at creation carry a tag under a key the database does not hold (`tag`).
CREATE TABLE payout_links (
    id                 TEXT    PRIMARY KEY,
    tenant             TEXT    NOT NULL,
    client_id          TEXT    NOT NULL REFERENCES clients (id),
    idempotency_key    TEXT    NOT NULL,
    request_hash       BLOB    NOT NULL,
    amount             INTEGER NOT NULL CHECK (amount > 0),
    currency           TEXT    NOT NULL,
    recipient_name     TEXT,
    metadata           TEXT,
    collect_session_id TEXT    NOT NULL UNIQUE,
    session_url        TEXT    NOT NULL,
    sealed_secret      TEXT    NOT NULL,
    expires_at         INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    tag                BLOB    NOT NULL,
    state              TEXT    NOT NULL,
    payout_id          TEXT    UNIQUE REFERENCES payouts (id),
    card_last4         TEXT,
    card_brand         TEXT,
    completed_at       INTEGER,
    next_poll_at       INTEGER NOT NULL,
    lease_owner        TEXT,
    updated_at         INTEGER NOT NULL,
    version            INTEGER NOT NULL
) STRICT;

-- Same app, same Idempotency-Key: the same link.
CREATE UNIQUE INDEX payout_links_idempotency ON payout_links (client_id, idempotency_key);
-- The poller's claim (SQLite uses a partial index only when the query repeats its condition).
CREATE INDEX payout_links_open ON payout_links (next_poll_at) WHERE state = 'open';

-- An app event may be about a link with no payout (`payout_link.expired`): the outbox's payout
-- becomes optional and it names the link, one of the two always set. SQLite cannot drop a NOT
-- NULL in place, so the table is made again (nothing refers to it).
CREATE TABLE outbox_next (
    id              TEXT    PRIMARY KEY,
    payout_id       TEXT    REFERENCES payouts (id),
    client_id       TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    delivered_at    INTEGER,
    abandoned_at    INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    payout_link_id  TEXT    REFERENCES payout_links (id),
    CHECK (payout_id IS NOT NULL OR payout_link_id IS NOT NULL)
) STRICT;
INSERT INTO outbox_next (id, payout_id, client_id, event_type, payload, attempts,
                         next_attempt_at, delivered_at, abandoned_at, last_error, created_at)
    SELECT id, payout_id, client_id, event_type, payload, attempts, next_attempt_at,
           delivered_at, abandoned_at, last_error, created_at
    FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_next RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE delivered_at IS NULL AND abandoned_at IS NULL;
CREATE INDEX outbox_client ON outbox (client_id, created_at, id);
