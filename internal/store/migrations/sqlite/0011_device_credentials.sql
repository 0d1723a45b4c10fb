-- Device credentials (issue 13): how a thing proves itself to the MQTT
-- broker. State kept beside the events, not derived from them (Rebuild
-- leaves this table alone). A password row keeps only the SHA-256 (hex) of
-- the password, a certificate row only the SHA-256 (hex) of the
-- certificate's DER; never a password or a private key. A row is valid
-- while revoked_at is NULL; rows are never deleted.
CREATE TABLE device_credentials (
  id          TEXT NOT NULL PRIMARY KEY,
  thing       TEXT NOT NULL,
  kind        TEXT NOT NULL CHECK (kind IN ('password', 'certificate')),
  secret_hash TEXT,
  fingerprint TEXT UNIQUE,
  created_at  TEXT NOT NULL,
  revoked_at  TEXT,
  CHECK ((kind = 'password' AND secret_hash IS NOT NULL AND fingerprint IS NULL)
      OR (kind = 'certificate' AND fingerprint IS NOT NULL AND secret_hash IS NULL))
);
CREATE INDEX device_credentials_thing ON device_credentials (thing);
