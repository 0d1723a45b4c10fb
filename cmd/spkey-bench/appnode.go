package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/server"
	"github.com/spkey-dev/spkey/internal/store"
)

// appNode is a store (SQLite file or a fresh PostgreSQL schema, opened by
// server.OpenStore as `spkey serve` opens its own) and the app over it,
// driven in-process by the rebuild (r) and memory (m) scenarios: the same
// command path as an HTTP request, without HTTP.
type appNode struct {
	backend string
	st      *store.Store
	svc     *app.Service
	org     string
	tenant  app.Call // the tenant's key, as a request with X-API-Key has it
	events  atomic.Int64
	drop    func()
}

// openAppNode opens the store of backend in dir (SQLite) or in a fresh
// schema of c.pg, builds the app over it and registers a tenant with a
// key (2 events).
func openAppNode(ctx context.Context, c benchConfig, backend, dir string) (n *appNode, err error) {
	n, err = openNodeStore(ctx, c, backend, dir, store.SQLiteOptions{})
	if err != nil {
		return nil, err
	}
	n.svc = app.New(n.st, app.Options{}, discardLog())
	if _, err := n.register(ctx); err != nil {
		n.close()
		return nil, err
	}
	return n, nil
}

// openNodeStore opens the store of an appNode (svc is the caller's to set).
func openNodeStore(ctx context.Context, c benchConfig, backend, dir string, opt store.SQLiteOptions) (*appNode, error) {
	n := &appNode{backend: backend, org: "bench-org", drop: func() {}}
	cfg := server.StoreConfig{SQLite: filepath.Join(dir, "spkey.db"), SQLiteOptions: opt}
	if backend == "postgres" {
		u, drop, _, err := freshSchema(ctx, c.pg)
		if err != nil {
			return nil, err
		}
		n.drop, cfg = drop, server.StoreConfig{DB: u}
	}
	st, err := server.OpenStore(ctx, cfg, discardLog())
	if err != nil {
		n.drop()
		return nil, err
	}
	n.st = st
	return n, nil
}

// register registers the node's tenant and issues its API key (2 events):
// from then on n.tenant is a call with that key.
func (n *appNode) register(ctx context.Context) (apiKey string, err error) {
	admin := app.Principal{Admin: true, Email: "bench"}
	if _, err := n.svc.RegisterTenant(ctx, app.Call{P: admin, Route: "register " + n.org}, n.org, "Bench", ""); err != nil {
		return "", fmt.Errorf("bench: register tenant: %w", err)
	}
	k, err := n.svc.IssueKey(ctx, admin, app.IssueKeyInput{OrgID: n.org}, false)
	if err != nil {
		return "", fmt.Errorf("bench: issue key: %w", err)
	}
	n.events.Add(2)
	n.tenant = app.Call{P: app.Principal{Kind: app.TenantCaller, OrgID: n.org}}
	return k.APIKey, nil
}

func (n *appNode) close() {
	if n.st != nil {
		n.st.Close()
	}
	n.drop()
}

// parallel runs op(w) for w in [0, workers) and joins their errors.
func parallel(ctx context.Context, workers int, op func(w int) error) error {
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() { errs[w] = op(w) })
	}
	wg.Wait()
	return errors.Join(append(errs, ctx.Err())...)
}

// lockSet is locks 1..len(users) of an appNode with users of their own:
// users[i] are the users of lock i+1, present[i][j] says whether users[i][j]
// is a resident of it now.
type lockSet struct {
	n       *appNode
	users   [][]string
	present [][]bool
	cursor  []int // per lock: commands sent to it so far
}

// createLocks creates locks 1..locks and perLock users for each (one
// event each), from workers goroutines, each owning its own locks.
func (n *appNode) createLocks(ctx context.Context, locks, perLock, workers int) (*lockSet, error) {
	ls := &lockSet{n: n, users: make([][]string, locks), present: make([][]bool, locks), cursor: make([]int, locks)}
	for i := range ls.users {
		ls.users[i] = make([]string, perLock)
		ls.present[i] = make([]bool, perLock)
		for j := range ls.users[i] {
			ls.users[i][j] = app.NewUUID()
		}
	}
	workers = min(workers, locks)
	err := parallel(ctx, workers, func(w int) error {
		for i := w; i < locks && ctx.Err() == nil; i += workers {
			id := strconv.Itoa(i + 1)
			if _, err := n.svc.CreateLock(ctx, n.tenant, int64(i+1), app.CreateLockInput{Index: 1, UUID: app.NewUUID(), SerialNumber: "BENCH-" + id}); err != nil {
				return fmt.Errorf("bench: create lock %s: %w", id, err)
			}
			n.events.Add(1)
			for j, u := range ls.users[i] {
				in := app.CreateUserInput{UserID: u, Email: "bench-" + id + "-" + strconv.Itoa(j) + "@example.com", FirstName: "Bench", LastName: "User " + id}
				if _, err := n.svc.CreateUser(ctx, n.tenant, u, in); err != nil {
					return fmt.Errorf("bench: create user: %w", err)
				}
				n.events.Add(1)
			}
		}
		return nil
	})
	return ls, err
}

// addResidents makes the first k users of every lock residents of it.
func (ls *lockSet) addResidents(ctx context.Context, k, workers int) error {
	locks := len(ls.users)
	workers = min(workers, locks)
	return parallel(ctx, workers, func(w int) error {
		for i := w; i < locks && ctx.Err() == nil; i += workers {
			for j := range min(k, len(ls.users[i])) {
				if !ls.present[i][j] {
					if err := ls.flip(ctx, i, j); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
}

// flip adds users[i][j] to lock i+1 or removes it (one event).
func (ls *lockSet) flip(ctx context.Context, i, j int) error {
	u := ls.users[i][j]
	var err error
	if ls.present[i][j] {
		_, err = ls.n.svc.RemoveResident(ctx, ls.n.tenant, int64(i+1), app.ResidentInput{UserID: &u})
	} else {
		_, err = ls.n.svc.AddResident(ctx, ls.n.tenant, int64(i+1), app.ResidentInput{Name: "Resident " + strconv.Itoa(j), UserID: &u})
	}
	if err != nil {
		return fmt.Errorf("bench: lock %d: %w", i+1, err)
	}
	ls.present[i][j] = !ls.present[i][j]
	ls.n.events.Add(1)
	return nil
}

// commands sends n commands (one event each) from workers goroutines,
// each owning its own locks and walking them round robin. Each command on
// lock i flips one user among users[i][from:from+span] in turn (adds it,
// or removes it if present); with ringEvery > 0, every ringEvery-th command on a lock
// that has residents rings its doorbell instead.
func (ls *lockSet) commands(ctx context.Context, n, from, span, ringEvery, workers int) error {
	locks := len(ls.users)
	workers = min(workers, locks)
	return parallel(ctx, workers, func(w int) error {
		owned := (locks - w + workers - 1) / workers
		mine := n/workers + btoi(w < n%workers)
		for k := 0; k < mine && ctx.Err() == nil; k++ {
			i := w + (k%owned)*workers
			c := ls.cursor[i]
			ls.cursor[i]++
			if ringEvery > 0 && c%ringEvery == ringEvery-1 && slicesAny(ls.present[i]) {
				if _, err := ls.n.svc.RingDoorbell(ctx, ls.n.tenant, int64(i+1), app.RingInput{VisitorName: "Bench"}); err != nil {
					return fmt.Errorf("bench: ring lock %d: %w", i+1, err)
				}
				ls.n.events.Add(1)
				continue
			}
			if err := ls.flip(ctx, i, from+c%span); err != nil {
				return err
			}
		}
		return nil
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func slicesAny(bs []bool) bool {
	for _, b := range bs {
		if b {
			return true
		}
	}
	return false
}
