package main

import (
	"fmt"
	"syscall"
)

// raiseFDLimit raises this process's open-file limit to at least n (up to
// the hard limit), or returns an error when the hard limit is below n.
func raiseFDLimit(n uint64) error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("bench: open-file limit: %w", err)
	}
	if l.Cur >= n {
		return nil
	}
	if l.Max < n {
		return fmt.Errorf("bench: open-file limit %d (hard %d) is below the %d this scenario needs: raise it (ulimit -n) or lower -devices", l.Cur, l.Max, n)
	}
	l.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("bench: raise the open-file limit to %d: %w", n, err)
	}
	return nil
}
