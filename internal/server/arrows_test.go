package server_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// module is the path of spkey's module.
const module = "github.com/spkey-dev/spkey"

// pendingArrows are the arrows of TestArrows that do not hold yet, each
// with the work that makes it hold. An arrow listed here is an expected
// failure: the test logs it and fails if the arrow holds (remove it from
// here then, so that it stays enforced).
var pendingArrows = map[string]string{}

// pkg is what `go list -json` says of a package.
type pkg struct {
	ImportPath string
	Standard   bool
	Imports    []string // its own imports (not its tests')
	Deps       []string // every package it builds on, transitively
}

// arrow is one rule of the layering: broken returns what breaks it in
// pkgs (nil: it holds).
type arrow struct {
	name   string
	broken func(pkgs map[string]pkg) []string
}

// TestArrows enforces the direction of the imports (docs/architecture.md):
// the domain builds on the standard library alone, the outbox consumers
// notify and webhook never reach each other, the device gateway reaches
// neither them nor httpapi, httpapi does not import the store, and the
// server binary does not link the bench's load generator.
func TestArrows(t *testing.T) {
	pkgs := listPackages(t)
	arrows := []arrow{
		{"internal/domain/... imports only the standard library", func(pkgs map[string]pkg) []string {
			var bad []string
			for path, p := range pkgs {
				if !under(path, "internal/domain") {
					continue
				}
				for _, d := range p.Deps {
					if pkgs[d].Standard || under(d, "internal/domain") {
						continue
					}
					// domaintest, imported only by _test files, holds the
					// property tests' helpers: it may use test libraries.
					if path == module+"/internal/domain/domaintest" && !strings.HasPrefix(d, module+"/") {
						continue
					}
					bad = append(bad, path+" -> "+d)
				}
			}
			return bad
		}},
		{"internal/notify does not depend on internal/webhook", dependsOn("internal/notify", "internal/webhook")},
		{"internal/webhook does not depend on internal/notify", dependsOn("internal/webhook", "internal/notify")},
		{"internal/devices/... does not depend on internal/notify, internal/webhook or internal/httpapi", func(pkgs map[string]pkg) []string {
			var bad []string
			for _, to := range []string{"internal/notify", "internal/webhook", "internal/httpapi"} {
				bad = append(bad, dependsOn("internal/devices", to)(pkgs)...)
			}
			return bad
		}},
		{"internal/httpapi does not import internal/store", func(pkgs map[string]pkg) []string {
			var bad []string
			for path, p := range pkgs {
				if under(path, "internal/httpapi") && slices.Contains(p.Imports, module+"/internal/store") {
					bad = append(bad, path+" -> "+module+"/internal/store")
				}
			}
			return bad
		}},
		{"cmd/spkey does not link github.com/tsenart/vegeta", func(pkgs map[string]pkg) []string {
			var bad []string
			for _, d := range pkgs[module+"/cmd/spkey"].Deps {
				if strings.HasPrefix(d, "github.com/tsenart/vegeta") {
					bad = append(bad, "cmd/spkey -> "+d)
				}
			}
			return bad
		}},
	}
	if _, ok := pkgs[module+"/cmd/spkey"]; !ok {
		t.Fatal("go list did not list cmd/spkey")
	}
	for _, a := range arrows {
		bad := a.broken(pkgs)
		slices.Sort(bad)
		why, pending := pendingArrows[a.name]
		switch {
		case len(bad) > 0 && pending:
			t.Logf("pending arrow %q (%s) does not hold yet:\n  %s", a.name, why, strings.Join(bad, "\n  "))
		case len(bad) > 0:
			t.Errorf("arrow %q broken:\n  %s", a.name, strings.Join(bad, "\n  "))
		case pending:
			t.Errorf("arrow %q holds now: remove it from pendingArrows so that it stays enforced", a.name)
		}
	}
	for name := range pendingArrows {
		if !slices.ContainsFunc(arrows, func(a arrow) bool { return a.name == name }) {
			t.Errorf("pendingArrows names %q, which is no arrow of TestArrows", name)
		}
	}
}

// dependsOn is the rule that no package under from builds on a package
// under to, directly or through others.
func dependsOn(from, to string) func(map[string]pkg) []string {
	return func(pkgs map[string]pkg) []string {
		var bad []string
		for path, p := range pkgs {
			if !under(path, from) {
				continue
			}
			for _, d := range p.Deps {
				if under(d, to) {
					bad = append(bad, path+" -> "+d)
				}
			}
		}
		return bad
	}
}

// under reports whether path is the package dir of the module, or below
// it.
func under(path, dir string) bool {
	dir = module + "/" + dir
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// listPackages runs `go list -deps` on the whole module and returns every
// package it lists (the module's and those they build on) by import path.
func listPackages(t *testing.T) map[string]pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-json=ImportPath,Standard,Imports,Deps", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs[p.ImportPath] = p
	}
	return pkgs
}
