-- How many times each key version has sealed (PANs under a data key): AES-GCM with random
-- 96-bit nonces is safe for about 2^32 messages per key, so the vault rotates a data key well
-- before (keys.data_key_max_seals). Each vault adds its count every second; the total survives
-- restarts and is shared by replicas.
ALTER TABLE keys ADD COLUMN seals INTEGER NOT NULL DEFAULT 0;
