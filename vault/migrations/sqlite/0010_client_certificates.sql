-- A client may be bound to a TLS client certificate (mutual TLS): the SHA-256 of its DER. The
-- row MAC covers it, so a database writer can neither unbind a client nor bind it elsewhere.
ALTER TABLE clients ADD COLUMN cert_sha256 BLOB CHECK (cert_sha256 IS NULL OR length(cert_sha256) = 32);
