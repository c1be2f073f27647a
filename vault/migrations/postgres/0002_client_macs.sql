-- Client rows carry a MAC under the vault's client key (DESIGN §9.2: the database is not trusted
-- for authorization), so the keys table gains the 'client' purpose.

ALTER TABLE keys DROP CONSTRAINT keys_purpose_check;
ALTER TABLE keys ADD CONSTRAINT keys_purpose_check
    CHECK (purpose IN ('data', 'fingerprint', 'audit', 'client'));

-- NULL only in rows written before this migration; such a row authenticates nothing until
-- `vault upgrade` MACs it.
ALTER TABLE clients ADD COLUMN mac BYTEA;

-- Revocations are read at start-up, so that a client row restored from before its revocation
-- is still refused (its MAC, from the vault's own earlier write, would verify).
CREATE INDEX audit_events_client_revoke ON audit_events (seq) WHERE action = 'client.revoke';
