package store

import (
	"sync"

	"github.com/spkey-dev/spkey/internal/es"
)

// readCache keeps rows that reads ask for again and again (snapshots, users
// by id, API keys by hash) in memory. It exists only on SQLite, where one
// process owns the database: every change goes through this store's writer,
// which updates or drops cached rows after its commit and before the caller
// gets its answer. On PostgreSQL other nodes write too, so reads go to the
// database. Negative lookups are never cached.
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
}

// maxCached bounds each map; a full map is emptied and refilled on demand.
const maxCached = 100_000

func newReadCache() *readCache {
	return &readCache{snaps: map[[2]string]es.Snapshot{}, users: map[string]User{}, contacts: map[string]string{}, keys: map[string]APIKey{}}
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

// putSnapshot stores s unless a newer version is already there: versions
// only grow, so a slow reader never overwrites a fresher write.
func (c *readCache) putSnapshot(s es.Snapshot) {
	if c == nil {
		return
	}
	k := [2]string{s.AggregateType, s.AggregateID}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.snaps[k]; ok && old.Version >= s.Version {
		return
	}
	if len(c.snaps) >= maxCached {
		c.snaps = map[[2]string]es.Snapshot{}
	}
	c.snaps[k] = s
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
	c.snaps, c.users, c.contacts, c.keys = map[[2]string]es.Snapshot{}, map[string]User{}, map[string]string{}, map[string]APIKey{}
	c.gen++
}
