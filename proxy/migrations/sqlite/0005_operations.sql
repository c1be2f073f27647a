-- An app's API key can be rotated in place (the client, its payouts and its idempotency keys
-- stay): the previous key may keep working until a set time, for a rollout without downtime.
ALTER TABLE clients ADD COLUMN previous_key_hash BLOB;
ALTER TABLE clients ADD COLUMN previous_key_expires_at INTEGER;
CREATE INDEX clients_previous_key ON clients (previous_key_hash)
    WHERE previous_key_hash IS NOT NULL;
-- An app lists its own webhook events (GET /v1/events), newest first.
CREATE INDEX outbox_client ON outbox (client_id, created_at, id);
