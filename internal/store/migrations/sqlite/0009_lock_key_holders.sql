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
INSERT OR IGNORE INTO lock_key_holders (lock_id, key_uuid, user_id)
  SELECT a.aggregate_id, json_extract(k.value, '$.uuid'), json_extract(k.value, '$.userId') FROM aggregates a, json_each(a.state, '$.keys') k
   WHERE a.aggregate_type = 'lock' AND k.type = 'object' AND COALESCE(json_extract(k.value, '$.uuid'), '') <> ''
     AND COALESCE(json_extract(k.value, '$.userId'), '') <> '';
