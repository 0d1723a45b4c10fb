CREATE TABLE events (
  seq            INTEGER PRIMARY KEY, -- rowid: grows by one, events are never deleted
  aggregate_type TEXT    NOT NULL,
  aggregate_id   TEXT    NOT NULL,
  version        INTEGER NOT NULL,
  type           TEXT    NOT NULL,
  ts             TEXT    NOT NULL,
  org_id         TEXT    NOT NULL DEFAULT '',
  data           TEXT    NOT NULL,
  UNIQUE (aggregate_type, aggregate_id, version)
);
CREATE TABLE aggregates (
  aggregate_type TEXT    NOT NULL,
  aggregate_id   TEXT    NOT NULL,
  version        INTEGER NOT NULL,
  org_id         TEXT    NOT NULL DEFAULT '',
  state          TEXT    NOT NULL,
  created_at     TEXT    NOT NULL,
  updated_at     TEXT    NOT NULL,
  PRIMARY KEY (aggregate_type, aggregate_id)
);
CREATE TABLE outbox (
  id              INTEGER PRIMARY KEY, -- rowid: rows are marked done, never deleted
  consumer        TEXT    NOT NULL,
  event_seq       INTEGER NOT NULL,
  aggregate_type  TEXT    NOT NULL,
  aggregate_id    TEXT    NOT NULL,
  version         INTEGER NOT NULL,
  org_id          TEXT    NOT NULL DEFAULT '',
  created_at      TEXT    NOT NULL,
  attempts        INTEGER NOT NULL DEFAULT 0,
  next_attempt_at TEXT,
  claimed_by      TEXT,
  claimed_until   TEXT,
  done_at         TEXT,
  last_error      TEXT
);
CREATE INDEX outbox_pending ON outbox (consumer, id) WHERE done_at IS NULL;
CREATE TABLE users (
  user_id    TEXT PRIMARY KEY,
  email      TEXT UNIQUE,
  phone      TEXT UNIQUE,
  first_name TEXT NOT NULL DEFAULT '',
  last_name  TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL
);
CREATE TABLE user_tenants (
  user_id TEXT NOT NULL,
  org_id  TEXT NOT NULL,
  PRIMARY KEY (user_id, org_id)
);
CREATE TABLE tenant_contacts (
  org_id      TEXT PRIMARY KEY,
  owner_email TEXT NOT NULL DEFAULT ''
);
CREATE TABLE api_keys (
  key_id     TEXT PRIMARY KEY,
  org_id     TEXT    NOT NULL,
  hash       TEXT    NOT NULL UNIQUE,
  masked     TEXT    NOT NULL,
  super      INTEGER NOT NULL,
  created_at TEXT    NOT NULL,
  created_by TEXT    NOT NULL,
  expires_at TEXT,
  revoked_at TEXT
);
CREATE TABLE idempotency (
  scope      TEXT    NOT NULL,
  key        TEXT    NOT NULL,
  body_hash  TEXT    NOT NULL,
  response   TEXT    NOT NULL,
  created_at TEXT    NOT NULL,
  PRIMARY KEY (scope, key)
);
