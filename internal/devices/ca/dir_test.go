package ca_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/devices/ca"
)

// dirEntries lists dir's names with their permissions.
func dirEntries(t *testing.T, dir string) map[string]fs.FileMode {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]fs.FileMode{}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		got[e.Name()] = info.Mode().Perm()
	}
	return got
}

func TestLoadOrCreateDirCreatesThenLoads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "device-ca")
	first, err := ca.LoadOrCreateDir(dir, now)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if got := first.Certificate().Subject.CommonName; got != ca.DefaultName {
		t.Errorf("CA named %q, want %q", got, ca.DefaultName)
	}
	// Only the two files, nothing left from writing them, the key private.
	want := map[string]fs.FileMode{ca.CertFile: 0o644, ca.KeyFile: 0o600}
	if diff := cmp.Diff(want, dirEntries(t, dir)); diff != "" {
		t.Errorf("files in dir (-want +got):\n%s", diff)
	}
	info, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != 0o700 {
		t.Errorf("dir mode %o, want 700", got)
	}
	certPEM, keyPEM, err := first.PEM()
	if err != nil {
		t.Fatal(err)
	}
	for name, wantPEM := range map[string][]byte{ca.CertFile: certPEM, ca.KeyFile: keyPEM} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(wantPEM), string(got)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}

	// Later, at another time: the same CA, not a new one.
	second, err := ca.LoadOrCreateDir(dir, now.Add(72*time.Hour))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if diff := cmp.Diff(ca.Fingerprint(first.Certificate()), ca.Fingerprint(second.Certificate())); diff != "" {
		t.Errorf("fingerprint of the loaded CA (-want +got):\n%s", diff)
	}
	clientPEM, _, _, err := second.IssueClient("lock-1", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseCert(t, clientPEM).Verify(clientOpts(first)); err != nil {
		t.Errorf("certificate of the loaded CA does not verify against the created one: %v", err)
	}
	if diff := cmp.Diff(want, dirEntries(t, dir)); diff != "" {
		t.Errorf("files in dir after loading (-want +got):\n%s", diff)
	}
}

func TestLoadOrCreateDirRefuses(t *testing.T) {
	one := newCA(t, "CA one")
	two := newCA(t, "CA two")
	certOne, keyOne, err := one.PEM()
	if err != nil {
		t.Fatal(err)
	}
	_, keyTwo, err := two.PEM()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		files map[string][]byte
		want  error
	}{
		{"certificate without key", map[string][]byte{ca.CertFile: certOne}, ca.ErrIncompletePair},
		{"key without certificate", map[string][]byte{ca.KeyFile: keyOne}, ca.ErrIncompletePair},
		{"key of another CA", map[string][]byte{ca.CertFile: certOne, ca.KeyFile: keyTwo}, ca.ErrKeyMismatch},
		{"garbage certificate", map[string][]byte{ca.CertFile: []byte("garbage"), ca.KeyFile: keyOne}, ca.ErrInvalidCA},
		{"empty key", map[string][]byte{ca.CertFile: certOne, ca.KeyFile: {}}, ca.ErrInvalidCA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := ca.LoadOrCreateDir(dir, now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("LoadOrCreateDir = %v, %v; want error %v", got, err, tt.want)
			}
			t.Logf("refused: %v", err)
			// What was there is left as it was, and nothing added.
			after := map[string][]byte{}
			for name := range dirEntries(t, dir) {
				data, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil {
					t.Fatal(err)
				}
				after[name] = data
			}
			if diff := cmp.Diff(tt.files, after); diff != "" {
				t.Errorf("files after refusal (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadOrCreateDirUnreadable(t *testing.T) {
	dir := t.TempDir()
	// A folder where the key should be: present, but not readable as a file.
	if err := os.Mkdir(filepath.Join(dir, ca.KeyFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ca.CertFile), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := ca.LoadOrCreateDir(dir, now); err == nil {
		t.Fatalf("LoadOrCreateDir = %v, nil; want an error", got)
	}
}
