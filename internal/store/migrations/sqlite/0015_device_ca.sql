-- The device CA kept in the database (issue 13), for nodes that share a
-- database and have no shared folder (spkey serve --db without
-- --device-ca-dir). One row; the first node to start creates it, every
-- other node reads it. State beside the events (never rebuilt).
CREATE TABLE device_ca (
  id         INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
  cert_pem   TEXT NOT NULL,
  key_pem    TEXT NOT NULL,
  created_at TEXT NOT NULL
);
