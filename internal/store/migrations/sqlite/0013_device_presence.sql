-- Device presence (issue 13): whether each thing is connected, state kept
-- beside the events, not derived from them (Rebuild leaves this table
-- alone). One row per thing that was ever seen. online is what the node
-- holding the thing's latest connection (node) last said; last_seen is
-- when the thing last connected or disconnected (domain.TimeLayout). A
-- node that starts again sets its own rows offline (their connections
-- ended with it), keeping last_seen. announced is the presence the lock's
-- events last told partners (LockDeviceConnected / LockDeviceDisconnected)
-- and connected_at when the last LockDeviceConnected was recorded ('':
-- never), which bounds how often a flapping device writes events.
CREATE TABLE device_presence (
  thing        TEXT    NOT NULL PRIMARY KEY,
  online       BOOLEAN NOT NULL,
  last_seen    TEXT    NOT NULL,
  node         TEXT    NOT NULL,
  announced    BOOLEAN NOT NULL DEFAULT FALSE,
  connected_at TEXT    NOT NULL DEFAULT '',
  updated_at   TEXT    NOT NULL
);
CREATE INDEX device_presence_node ON device_presence (node, online);
