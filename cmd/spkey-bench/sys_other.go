//go:build !linux

package main

import "time"

// fsType names the file system under path where the platform tells.
func fsType(string) string { return "file system not inspected" }

// cpuTime is not measured here.
func cpuTime() time.Duration { return 0 }

// loadAvg is not known here.
func loadAvg() string { return "" }

// vmRSS is not measured here.
func vmRSS() int64 { return 0 }
