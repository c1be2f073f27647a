-- Leases that fence bank calls (DESIGN §5): the replica that last claimed or saved a payout, and
-- how many times its start was re-sent after the bank showed none.
ALTER TABLE payouts ADD COLUMN lease_owner TEXT;
ALTER TABLE payouts ADD COLUMN start_sends BIGINT NOT NULL DEFAULT 0;
