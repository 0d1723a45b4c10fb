-- Doorbell: outbox rows aimed at one recipient and channel, every delivery
-- attempt, the ring read models and the per-user live feed.
ALTER TABLE outbox ADD COLUMN target TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN status TEXT NOT NULL DEFAULT 'pending';
CREATE INDEX outbox_ring ON outbox (aggregate_id) WHERE aggregate_type = 'doorbell-ring';
CREATE TABLE delivery_attempts (
  outbox_id   INTEGER NOT NULL,
  attempt     INTEGER NOT NULL,
  at          TEXT    NOT NULL,
  node        TEXT    NOT NULL DEFAULT '',
  outcome     TEXT    NOT NULL,
  status_code INTEGER NOT NULL DEFAULT 0,
  error       TEXT    NOT NULL DEFAULT '',
  latency_ms  INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (outbox_id, attempt)
);
CREATE TABLE doorbell_rings (
  ring_id   TEXT PRIMARY KEY,
  lock_id   TEXT    NOT NULL,
  org_id    TEXT    NOT NULL DEFAULT '',
  rang_at   TEXT    NOT NULL,
  event_seq INTEGER NOT NULL
);
CREATE INDEX doorbell_rings_lock ON doorbell_rings (lock_id, event_seq);
CREATE TABLE doorbell_ring_targets (
  user_id   TEXT    NOT NULL,
  ring_id   TEXT    NOT NULL,
  lock_id   TEXT    NOT NULL,
  event_seq INTEGER NOT NULL,
  PRIMARY KEY (user_id, ring_id)
);
CREATE INDEX doorbell_ring_targets_user ON doorbell_ring_targets (user_id, event_seq);
CREATE TABLE live_feed (
  user_id    TEXT    NOT NULL,
  n          INTEGER NOT NULL,
  kind       TEXT    NOT NULL,
  ring_id    TEXT    NOT NULL,
  outbox_id  INTEGER NOT NULL,
  data       TEXT    NOT NULL,
  org_id     TEXT    NOT NULL DEFAULT '', -- the ring's tenant: a tenant's key sees only its own
  created_at TEXT    NOT NULL,
  PRIMARY KEY (user_id, n),
  UNIQUE (outbox_id)
);
-- The newest entry number of each user's feed: its row lock (held until
-- commit) numbers a user's entries in commit order.
CREATE TABLE live_feed_heads (
  user_id TEXT PRIMARY KEY,
  n       INTEGER NOT NULL
)
