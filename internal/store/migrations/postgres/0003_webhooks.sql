-- Partner webhooks: the subscriptions (projected from tenant events), their
-- secrets (never in events), ordered per-webhook delivery rows, replay by
-- tenant and time, and the portal's one-time sign-in links.
CREATE TABLE webhooks (
  webhook_id TEXT PRIMARY KEY,
  org_id     TEXT NOT NULL,
  url        TEXT NOT NULL,
  events     TEXT NOT NULL, -- JSON array: ["*"] or event types
  status     TEXT NOT NULL, -- pending | active | disabled
  created_at TEXT NOT NULL
);
CREATE INDEX webhooks_org ON webhooks (org_id, created_at);
CREATE TABLE webhook_secrets (
  webhook_id      TEXT PRIMARY KEY,
  secret          TEXT NOT NULL,
  previous_secret TEXT NOT NULL DEFAULT '',
  previous_until  TEXT NOT NULL DEFAULT '',
  auth_value      TEXT NOT NULL DEFAULT ''
);
-- A webhook's undone rows per aggregate, in order: only the oldest one of
-- an aggregate may be claimed.
CREATE INDEX outbox_target_order ON outbox (consumer, target, aggregate_type, aggregate_id, id) WHERE done_at IS NULL;
CREATE INDEX outbox_target ON outbox (target, id) WHERE target <> '';
CREATE INDEX events_org ON events (org_id, ts) WHERE org_id <> '';
CREATE TABLE portal_nonces (
  nonce   TEXT PRIMARY KEY,
  used_at TEXT NOT NULL
);
