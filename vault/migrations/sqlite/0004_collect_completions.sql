-- A collect session completes once, even against a database restored (or edited) to show a
-- completed session as open again: its row would carry the vault's own earlier MAC and verify.
-- The claim therefore also asks the audit chain, which cannot be cut without `vault audit
-- verify` noticing, whether a card was already accepted for the session (its id is the actor).
CREATE INDEX audit_events_collect_submit ON audit_events (actor)
    WHERE action = 'collect.submit' AND outcome = 'granted';

-- The sweeper deletes sessions past `collect.retention_seconds` by expiry.
CREATE INDEX collect_sessions_expires_at ON collect_sessions (expires_at);
