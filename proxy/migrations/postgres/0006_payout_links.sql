-- Payout links: a payout to a card the recipient enters on the vault's page (a standalone
-- collect session). No card data here either: the session id, its client secret sealed under
-- the proxy's key, and once completed the payout and the card's last four and brand. The fields
-- fixed at creation carry a tag under a key the database does not hold (`tag`).
CREATE TABLE payout_links (
    id                 TEXT    PRIMARY KEY,
    tenant             TEXT    NOT NULL,
    client_id          TEXT    NOT NULL REFERENCES clients (id),
    idempotency_key    TEXT    NOT NULL,
    request_hash       BYTEA   NOT NULL,
    amount             BIGINT  NOT NULL CHECK (amount > 0),
    currency           TEXT    NOT NULL,
    recipient_name     TEXT,
    metadata           TEXT,
    collect_session_id TEXT    NOT NULL UNIQUE,
    session_url        TEXT    NOT NULL,
    sealed_secret      TEXT    NOT NULL,
    expires_at         BIGINT  NOT NULL,
    created_at         BIGINT  NOT NULL,
    tag                BYTEA   NOT NULL,
    state              TEXT    NOT NULL,
    payout_id          TEXT    UNIQUE REFERENCES payouts (id),
    card_last4         TEXT,
    card_brand         TEXT,
    completed_at       BIGINT,
    next_poll_at       BIGINT  NOT NULL,
    lease_owner        TEXT,
    updated_at         BIGINT  NOT NULL,
    version            BIGINT  NOT NULL
);

-- Same app, same Idempotency-Key: the same link.
CREATE UNIQUE INDEX payout_links_idempotency ON payout_links (client_id, idempotency_key);
-- The poller's claim.
CREATE INDEX payout_links_open ON payout_links (next_poll_at) WHERE state = 'open';

-- An app event may be about a link with no payout (`payout_link.expired`): the outbox's payout
-- becomes optional and it names the link, one of the two always set.
ALTER TABLE outbox ALTER COLUMN payout_id DROP NOT NULL;
ALTER TABLE outbox ADD COLUMN payout_link_id TEXT REFERENCES payout_links (id);
ALTER TABLE outbox ADD CONSTRAINT outbox_subject
    CHECK (payout_id IS NOT NULL OR payout_link_id IS NOT NULL);
