// Package cmdline holds the command-line conventions spkey's commands
// share: flags and positional arguments in any order, help on stdout, and
// the environment as a map.
package cmdline

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"strings"
)

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
