-- Partner Shadow Updates (issue 13): an outbox row about a device shadow
-- update is not about a stored event; it carries its rendered detail.
-- NULL on every other row. Pruned with its row (retention).
ALTER TABLE outbox ADD COLUMN payload TEXT;
