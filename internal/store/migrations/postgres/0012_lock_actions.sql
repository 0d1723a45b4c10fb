-- Lock actions (issue 13): one row per device command's action, the
-- projection of LockActionUpdated (spkey's extension event). GET
-- /locks/{id}/actions/{requestId} reads it; the expiry sweep finds the
-- open actions due by lock_actions_due. Finished actions are dropped 30
-- days after they finished (the projection does it when the lock gets a
-- new action), so the table is bounded by the locks' recent activity.
CREATE TABLE lock_actions (
  lock_id    TEXT NOT NULL,
  request_id TEXT NOT NULL,
  action     TEXT NOT NULL,
  status     TEXT NOT NULL,
  key_uuid   TEXT NOT NULL DEFAULT '',
  key_index  BIGINT,
  at         BIGINT NOT NULL,
  error      TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  expires_at TEXT NOT NULL DEFAULT '',
  open       INTEGER NOT NULL,
  PRIMARY KEY (lock_id, request_id)
);
CREATE INDEX lock_actions_due ON lock_actions (expires_at) WHERE open = 1;
CREATE INDEX lock_actions_finished ON lock_actions (lock_id, updated_at) WHERE open = 0;
