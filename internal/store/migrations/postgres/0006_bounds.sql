-- Bounds (issue 10): idempotency records keep no secret or raw address,
-- replays run in resumable chunks, and the retention job finds old rows
-- by index.
UPDATE idempotency SET response = ((response::jsonb - 'secret') - 'email')::text;
-- A partner replay: queued in chunks from cursor_seq (exclusive) to
-- upto_seq; done_at is set when every chunk is queued (or the webhook is
-- gone). Its rows in the outbox carry its id in replay_id.
CREATE TABLE webhook_replays (
  id         BIGSERIAL PRIMARY KEY,
  webhook_id TEXT    NOT NULL,
  org_id     TEXT    NOT NULL,
  events     TEXT    NOT NULL, -- JSON array: the webhook's filter when asked
  since      TEXT    NOT NULL,
  cursor_seq BIGINT  NOT NULL,
  upto_seq   BIGINT  NOT NULL,
  total      BIGINT  NOT NULL,
  queued     BIGINT  NOT NULL DEFAULT 0,
  created_at TEXT    NOT NULL,
  done_at    TEXT
);
CREATE INDEX webhook_replays_org ON webhook_replays (org_id, created_at);
CREATE INDEX webhook_replays_open ON webhook_replays (id) WHERE done_at IS NULL;
ALTER TABLE outbox ADD COLUMN replay_id BIGINT;
CREATE INDEX outbox_replay_undone ON outbox (target) WHERE replay_id IS NOT NULL AND done_at IS NULL;
CREATE INDEX events_org_seq ON events (org_id, seq) WHERE org_id <> '';
CREATE INDEX outbox_done ON outbox (done_at) WHERE done_at IS NOT NULL;
CREATE INDEX idempotency_created ON idempotency (created_at);
CREATE INDEX live_feed_created ON live_feed (created_at)
