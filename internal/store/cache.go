package store

import (
	"sync"

	"github.com/spkey-dev/spkey/internal/es"
)

// readCache keeps rows that reads ask for again and again (snapshots, users
// by id, API keys by hash) in memory. Every change this store makes goes
// through its writer, which updates or drops cached rows after its commit
// and before the caller gets its answer. On SQLite that is all: one process
// owns the database. On PostgreSQL other nodes write too: their commits
// reach this cache as invalidations (fence.go), and reads use it only after
// a fence. Negative lookups are never cached.
type readCache struct {
	mu    sync.RWMutex
	snaps map[[2]string]es.Snapshot
	users map[string]User
	// contacts maps "email:<e>" and "phone:<p>" to a user id.
	contacts map[string]string
	keys     map[string]APIKey
	// gen moves whenever users or keys are dropped, so a reader that
	// started before the drop does not put back the row it read.
	gen uint64
	// floors holds, per snapshot dropped by another node's commit, the
	// version that commit wrote: a reader that read an older version
	// before the invalidation arrived cannot put it back (PostgreSQL).
	floors map[[2]string]int64
	// epoch moves whenever snapshots are dropped wholesale (clear, a full
	// map, forgotten floors): a reader that read before does not put back.
	epoch uint64
}

// maxCached bounds each map; a full map is emptied and refilled on demand.
const maxCached = 100_000

func newReadCache() *readCache {
	return &readCache{snaps: map[[2]string]es.Snapshot{}, users: map[string]User{}, contacts: map[string]string{}, keys: map[string]APIKey{},
		floors: map[[2]string]int64{}}
}

func (c *readCache) snapshot(typ, id string) (es.Snapshot, bool) {
	if c == nil {
		return es.Snapshot{}, false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	s, ok := c.snaps[[2]string{typ, id}]
	return s, ok
}

// putSnapshot stores s (written by this store's writer) unless a newer
// version is already there or another node's commit wrote a newer one:
// versions only grow, so a slow reader never overwrites a fresher write.
func (c *readCache) putSnapshot(s es.Snapshot) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putSnapshotLocked(s)
}

// putReadSnapshot stores s, read from the database by a reader that took
// epoch (snapEpoch) before its query, unless snapshots were dropped
// wholesale since.
func (c *readCache) putReadSnapshot(s es.Snapshot, epoch uint64) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch != epoch {
		return
	}
	c.putSnapshotLocked(s)
}

func (c *readCache) putSnapshotLocked(s es.Snapshot) {
	k := [2]string{s.AggregateType, s.AggregateID}
	if old, ok := c.snaps[k]; ok && old.Version >= s.Version {
		return
	}
	if f, ok := c.floors[k]; ok && s.Version < f {
		return
	}
	if len(c.snaps) >= maxCached {
		c.snaps = map[[2]string]es.Snapshot{}
		c.epoch++
	}
	c.snaps[k] = s
}

func (c *readCache) snapEpoch() uint64 {
	if c == nil {
		return 0
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.epoch
}

// staleSnapshot applies another node's commit of version v of one
// aggregate: an older cached version goes, and none older than v may come
// back. When too many floors pile up, everything is forgotten instead.
func (c *readCache) staleSnapshot(typ, id string, v int64) {
	if c == nil {
		return
	}
	k := [2]string{typ, id}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.snaps[k]; ok && old.Version < v {
		delete(c.snaps, k)
	}
	if f, ok := c.floors[k]; ok && f >= v {
		return
	}
	if len(c.floors) >= maxCached {
		c.clearLocked()
		return
	}
	c.floors[k] = v
}

// dropSnapshot forgets one aggregate; dropping is always safe.
func (c *readCache) dropSnapshot(typ, id string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.snaps, [2]string{typ, id})
}

func (c *readCache) generation() uint64 {
	if c == nil {
		return 0
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen
}

func (c *readCache) user(id string) (User, bool) { return c.userBy(ByID, id) }

// putUser stores u if nothing was dropped since gen was read.
func (c *readCache) putUser(u User, gen uint64) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if len(c.users) >= maxCached || len(c.contacts) >= maxCached {
		c.users, c.contacts = map[string]User{}, map[string]string{}
	}
	c.users[u.UserID] = u
	if u.Email != "" {
		c.contacts["email:"+u.Email] = u.UserID
	}
	if u.Phone != "" {
		c.contacts["phone:"+u.Phone] = u.UserID
	}
}

// userBy finds a cached user by id, e-mail or phone.
func (c *readCache) userBy(by UserBy, v string) (User, bool) {
	if c == nil {
		return User{}, false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	id := v
	switch by {
	case ByEmail:
		id = c.contacts["email:"+v]
	case ByPhone:
		id = c.contacts["phone:"+v]
	}
	u, ok := c.users[id]
	if ok && ((by == ByEmail && u.Email != v) || (by == ByPhone && u.Phone != v)) {
		return User{}, false
	}
	return u, ok
}

func (c *readCache) dropUser(id string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if u, ok := c.users[id]; ok {
		delete(c.contacts, "email:"+u.Email)
		delete(c.contacts, "phone:"+u.Phone)
	}
	delete(c.users, id)
	c.gen++
}

func (c *readCache) key(hash string) (APIKey, bool) {
	if c == nil {
		return APIKey{}, false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	k, ok := c.keys[hash]
	return k, ok
}

func (c *readCache) putKey(hash string, k APIKey, gen uint64) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if len(c.keys) >= maxCached {
		c.keys = map[string]APIKey{}
	}
	c.keys[hash] = k
}

func (c *readCache) dropKeys() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.keys = map[string]APIKey{}
	c.gen++
}

func (c *readCache) clear() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clearLocked()
}

func (c *readCache) clearLocked() {
	c.snaps, c.users, c.contacts, c.keys = map[[2]string]es.Snapshot{}, map[string]User{}, map[string]string{}, map[string]APIKey{}
	c.floors = map[[2]string]int64{}
	c.gen++
	c.epoch++
}
