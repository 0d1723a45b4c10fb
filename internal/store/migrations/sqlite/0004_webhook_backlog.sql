-- Parked partner webhooks: a webhook whose queue of undone deliveries is
-- full (a dead or slow receiver) gets no new rows; the partner rows from
-- parked_from on are queued for it when its queue drains (FanOutWebhooks).
CREATE TABLE webhook_backlog (
  webhook_id  TEXT PRIMARY KEY,
  parked_from INTEGER NOT NULL, -- the first partner outbox row it has not been given
  since       TEXT NOT NULL
);
