-- Key holders: which user holds which key of a lock (projection of
-- LockCreated, KeyAdded and KeyRemoved). KeyRemoved names the key, not its
-- holder: this table says whose key went and whether the holder has
-- another key on the lock, so that the 'key' role of lock_members goes
-- with the holder's last key. Filled from the lock snapshots.
CREATE TABLE lock_key_holders (
  lock_id  TEXT NOT NULL,
  key_uuid TEXT NOT NULL,
  user_id  TEXT NOT NULL,
  PRIMARY KEY (lock_id, key_uuid, user_id)
);
INSERT INTO lock_key_holders (lock_id, key_uuid, user_id)
  SELECT a.aggregate_id, k->>'uuid', k->>'userId' FROM aggregates a,
         jsonb_array_elements(CASE WHEN jsonb_typeof(a.state::jsonb->'keys') = 'array' THEN a.state::jsonb->'keys' ELSE '[]'::jsonb END) k
   WHERE a.aggregate_type = 'lock' AND jsonb_typeof(k) = 'object' AND COALESCE(k->>'uuid', '') <> '' AND COALESCE(k->>'userId', '') <> ''
  ON CONFLICT DO NOTHING;
