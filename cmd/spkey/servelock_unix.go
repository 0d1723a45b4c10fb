//go:build unix

package main

import (
	"fmt"
	"os"
	"syscall"
)

// lockData makes sure one `spkey serve` at a time uses a SQLite data
// folder: the server keeps read caches that another writer would make
// stale. The lock goes with the process, even on SIGKILL.
func lockData(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another spkey serve is using this data folder (%s is locked); use PostgreSQL (--db) to run several nodes", path)
	}
	return func() { f.Close() }, nil
}
