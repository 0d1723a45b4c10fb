// Package cmdline holds the command-line conventions spkey's commands
// share: flags and positional arguments in any order, help on stdout, and
// the environment as a map.
package cmdline

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Main runs a command's run with the process's arguments, environment and
// standard streams, under a context that ends on SIGINT or SIGTERM. An
// error is printed on stderr after the command's name, and the process
// exits with status 1.
func Main(name string, run func(ctx context.Context, args, env []string, stdout, stderr io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// Parse parses args on fs, flags and positional arguments mixed ("--"
// ends the flags), and returns the positional ones. Help goes to stdout
// (the error is flag.ErrHelp), a bad flag's message and the usage to
// stderr (the error is the flag package's).
func Parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) ([]string, error) {
	var out bytes.Buffer
	fs.SetOutput(&out)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			w := stderr
			if errors.Is(err, flag.ErrHelp) {
				w = stdout
			}
			_, _ = out.WriteTo(w)
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// Env turns KEY=VALUE pairs (os.Environ) into a map.
func Env(env []string) map[string]string {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}
