-- `returned` (a payout sent back by the recipient's bank) is final too: the reconciler's index
-- leaves it out, with the same condition as the claim query (SQLite uses a partial index only
-- when the query repeats its condition).
DROP INDEX payouts_unfinished;
CREATE INDEX payouts_unfinished ON payouts (next_attempt_at)
    WHERE state NOT IN ('succeeded', 'failed', 'cancelled', 'returned');
