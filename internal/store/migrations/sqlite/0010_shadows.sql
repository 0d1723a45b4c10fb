-- Device shadows (issue 13): state kept beside the events, not derived from
-- them (Rebuild leaves these tables alone). One row per shadow, the classic
-- shadow under name ''. doc is the document as shadow.Marshal writes it,
-- a deleted shadow included (it keeps its version counter), and version is
-- its version, which PutShadow compares before it writes.
CREATE TABLE shadows (
  thing      TEXT    NOT NULL,
  name       TEXT    NOT NULL,
  doc        TEXT    NOT NULL,
  version    INTEGER NOT NULL,
  updated_at TEXT    NOT NULL,
  PRIMARY KEY (thing, name)
);
-- The last shadow messages of each device, per direction, for
-- GET /locks/{id}/debug/messages: at most 200 per thing and direction,
-- the oldest pruned by the insert that goes past that.
CREATE TABLE shadow_messages (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  thing      TEXT    NOT NULL,
  direction  TEXT    NOT NULL CHECK (direction IN ('command', 'status')),
  payload    TEXT    NOT NULL,
  created_at TEXT    NOT NULL
);
CREATE INDEX shadow_messages_thing ON shadow_messages (thing, direction, id);
