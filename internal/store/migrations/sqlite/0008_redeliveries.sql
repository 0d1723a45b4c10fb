-- Partner redeliveries (issue 10): one row per accepted redeliver call, for
-- the per-tenant hourly limit and the "one undone redelivery per event and
-- webhook" rule; row_id is the outbox row it queued.
CREATE TABLE webhook_redeliveries (
  row_id     INTEGER PRIMARY KEY,
  webhook_id TEXT    NOT NULL,
  org_id     TEXT    NOT NULL,
  event_seq  INTEGER NOT NULL,
  created_at TEXT    NOT NULL
);
CREATE INDEX webhook_redeliveries_org ON webhook_redeliveries (org_id, created_at);
CREATE INDEX webhook_redeliveries_event ON webhook_redeliveries (webhook_id, event_seq);
