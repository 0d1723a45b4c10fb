-- Workflows (issue 13): the registry of long jobs (BulkAddKeys, the
-- canary), as upstream's admin workflow routes show them. State beside the
-- events, not derived from them. A run is claimed by one node at a time
-- through its lease; step is how many of its steps are done, so a node
-- that dies mid-run leaves it to another (or to itself after a restart),
-- which goes on from there. progress keeps the last entries only
-- (store.MaxWorkflowProgress); finished runs older than 30 days are
-- dropped when a new run starts.
CREATE TABLE workflows (
  instance_id   TEXT NOT NULL PRIMARY KEY,
  workflow_name TEXT NOT NULL,
  binding       TEXT NOT NULL,
  label         TEXT NOT NULL,
  status        TEXT NOT NULL,
  params        TEXT NOT NULL,
  progress      TEXT NOT NULL,
  result        TEXT,
  error         TEXT,
  created_by    TEXT,
  step          BIGINT NOT NULL DEFAULT 0,
  steps         BIGINT NOT NULL,
  next_at       TEXT NOT NULL,
  lease_owner   TEXT NOT NULL DEFAULT '',
  lease_until   TEXT NOT NULL DEFAULT '',
  created_at    TEXT NOT NULL,
  updated_at    TEXT NOT NULL
);
CREATE INDEX workflows_runnable ON workflows (next_at) WHERE status IN ('queued', 'running');
CREATE INDEX workflows_created ON workflows (created_at);
