-- Client rows carry a MAC under the vault's client key (DESIGN §9.2: the database is not trusted
-- for authorization), so the keys table gains the 'client' purpose.

ALTER TABLE keys DROP CONSTRAINT keys_purpose_check;
ALTER TABLE keys ADD CONSTRAINT keys_purpose_check
    CHECK (purpose IN ('data', 'fingerprint', 'audit', 'client'));

-- NULL only in rows written before this migration; such a row authenticates nothing until
-- `vault upgrade` MACs it.
ALTER TABLE clients ADD COLUMN mac BYTEA;
