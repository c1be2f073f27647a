-- Key versions live through states (README "Key lifecycle"): `active` (the newest one seals),
-- `decrypt_only` (`vault keys retire`: opens what it sealed, seals nothing) and `destroyed`.
-- The first schema called the middle state 'retired'.

ALTER TABLE keys DROP CONSTRAINT keys_state_check;
UPDATE keys SET state = 'decrypt_only' WHERE state = 'retired';
ALTER TABLE keys ADD CONSTRAINT keys_state_check
    CHECK (state IN ('active', 'decrypt_only', 'destroyed'));
