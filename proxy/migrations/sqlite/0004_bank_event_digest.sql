-- Each distinct bank webhook is kept once: a replayed or re-delivered body adds no row.
-- SHA-256 of the kind and the stored (redacted) body; rows from before this have none.
ALTER TABLE bank_events ADD COLUMN body_sha256 BLOB;
CREATE UNIQUE INDEX bank_events_body ON bank_events (body_sha256);
