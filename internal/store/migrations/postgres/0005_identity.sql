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
INSERT INTO lock_members (lock_id, user_id, role)
  SELECT a.aggregate_id, a.state::jsonb->>'ownerId', 'owner' FROM aggregates a
   WHERE a.aggregate_type = 'lock' AND COALESCE(a.state::jsonb->>'ownerId', '') <> ''
  ON CONFLICT DO NOTHING;
INSERT INTO lock_members (lock_id, user_id, role)
  SELECT a.aggregate_id, k->>'userId', 'key' FROM aggregates a,
         jsonb_array_elements(CASE WHEN jsonb_typeof(a.state::jsonb->'keys') = 'array' THEN a.state::jsonb->'keys' ELSE '[]'::jsonb END) k
   WHERE a.aggregate_type = 'lock' AND jsonb_typeof(k) = 'object' AND COALESCE(k->>'userId', '') <> ''
  ON CONFLICT DO NOTHING;
INSERT INTO lock_members (lock_id, user_id, role)
  SELECT a.aggregate_id, r->>'userId', 'resident' FROM aggregates a,
         jsonb_array_elements(CASE WHEN jsonb_typeof(a.state::jsonb->'residents') = 'array' THEN a.state::jsonb->'residents' ELSE '[]'::jsonb END) r
   WHERE a.aggregate_type = 'lock' AND jsonb_typeof(r) = 'object' AND COALESCE(r->>'userId', '') <> ''
  ON CONFLICT DO NOTHING;

-- One lock per device UUID (projection of LockCreated; the first lock
-- created with a UUID keeps it).
CREATE TABLE lock_devices (
  uuid    TEXT PRIMARY KEY,
  lock_id TEXT NOT NULL
);
INSERT INTO lock_devices (uuid, lock_id)
  SELECT a.state::jsonb->>'uuid', a.aggregate_id FROM aggregates a
   WHERE a.aggregate_type = 'lock' AND COALESCE(a.state::jsonb->>'uuid', '') <> ''
   ORDER BY a.created_at, a.aggregate_id
  ON CONFLICT DO NOTHING;
