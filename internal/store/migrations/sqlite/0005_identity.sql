-- Standing over shared user records (issue 10). A lookup no longer links a
-- user to a tenant: standing is the creator's custody (users.created_by,
-- while the person has never signed in and no other party has them on a
-- lock), or the person being on one of the tenant's locks (lock_members).
ALTER TABLE users ADD COLUMN created_by TEXT; -- the org whose key created the record; NULL: the person, the admin or a JWT
-- Today's links become custody only where one tenant alone was linked:
-- that tenant created the record and nobody else has a claim on it.
UPDATE users SET created_by = (SELECT t.org_id FROM user_tenants t WHERE t.user_id = users.user_id)
 WHERE (SELECT COUNT(*) FROM user_tenants t WHERE t.user_id = users.user_id) = 1;
DROP TABLE user_tenants;

-- Users who have called the API with their own token (or arrived through
-- the sign-up hook): primary data, not derived from events.
CREATE TABLE user_sign_ins (
  user_id  TEXT PRIMARY KEY,
  first_at TEXT NOT NULL
);

-- Who is on each lock (projection of lock events; rebuilt from them).
CREATE TABLE lock_members (
  lock_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  role    TEXT NOT NULL, -- owner | key | resident
  PRIMARY KEY (lock_id, user_id, role)
);
CREATE INDEX lock_members_user ON lock_members (user_id);
INSERT OR IGNORE INTO lock_members (lock_id, user_id, role)
  SELECT a.aggregate_id, json_extract(a.state, '$.ownerId'), 'owner' FROM aggregates a
   WHERE a.aggregate_type = 'lock' AND COALESCE(json_extract(a.state, '$.ownerId'), '') <> '';
INSERT OR IGNORE INTO lock_members (lock_id, user_id, role)
  SELECT a.aggregate_id, json_extract(k.value, '$.userId'), 'key' FROM aggregates a, json_each(a.state, '$.keys') k
   WHERE a.aggregate_type = 'lock' AND k.type = 'object' AND COALESCE(json_extract(k.value, '$.userId'), '') <> '';
INSERT OR IGNORE INTO lock_members (lock_id, user_id, role)
  SELECT a.aggregate_id, json_extract(r.value, '$.userId'), 'resident' FROM aggregates a, json_each(a.state, '$.residents') r
   WHERE a.aggregate_type = 'lock' AND r.type = 'object' AND COALESCE(json_extract(r.value, '$.userId'), '') <> '';

-- One lock per device UUID (projection of LockCreated; the first lock
-- created with a UUID keeps it).
CREATE TABLE lock_devices (
  uuid    TEXT PRIMARY KEY,
  lock_id TEXT NOT NULL
);
INSERT OR IGNORE INTO lock_devices (uuid, lock_id)
  SELECT json_extract(a.state, '$.uuid'), a.aggregate_id FROM aggregates a
   WHERE a.aggregate_type = 'lock' AND COALESCE(json_extract(a.state, '$.uuid'), '') <> ''
   ORDER BY a.created_at, a.aggregate_id;
