package store_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

const (
	credNow    = "2026-12-03T17:00:00.000Z"
	credLater  = "2026-12-03T18:00:00.000Z"
	credLatest = "2026-12-03T19:00:00.000Z"
)

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func passwordCred(id, thing, password, at string) store.DeviceCredential {
	return store.DeviceCredential{ID: id, Thing: thing, Kind: store.DeviceCredentialPassword, SecretHash: sha(password), CreatedAt: at}
}

func certCred(id, thing, der, at string) store.DeviceCredential {
	return store.DeviceCredential{ID: id, Thing: thing, Kind: store.DeviceCredentialCertificate, Fingerprint: sha(der), CreatedAt: at}
}

// credLookups is what the lookups answer for one probe each.
type credLookups struct {
	Password1, WrongPassword, OtherThingsPassword, Password2 bool
	CertThing                                                string
	CertFound, UnknownCert                                   bool
}

func lookups(t *testing.T, st *store.Store) credLookups {
	t.Helper()
	ctx := context.Background()
	var l credLookups
	var err error
	must := func(e error) {
		if e != nil && err == nil {
			err = e
		}
	}
	var e error
	l.Password1, e = st.DeviceByPasswordHash(ctx, "lock-1", sha("pw-1"))
	must(e)
	l.WrongPassword, e = st.DeviceByPasswordHash(ctx, "lock-1", sha("pw-x"))
	must(e)
	l.OtherThingsPassword, e = st.DeviceByPasswordHash(ctx, "lock-1", sha("pw-2"))
	must(e)
	l.Password2, e = st.DeviceByPasswordHash(ctx, "lock-2", sha("pw-2"))
	must(e)
	l.CertThing, l.CertFound, e = st.DeviceByFingerprint(ctx, sha("der-1"))
	must(e)
	_, l.UnknownCert, e = st.DeviceByFingerprint(ctx, sha("der-x"))
	must(e)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestDeviceCredentialsRoundTrip stores passwords and a certificate for
// two things, looks them up, revokes one thing's, and lists them: a
// lookup finds only a valid credential of the right thing, a revoke
// touches only that thing's and only once, and the listed rows hold the
// hashes and fingerprints, never the passwords.
func TestDeviceCredentialsRoundTrip(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st := testenv.OpenStore(t, b)
			for _, c := range []store.DeviceCredential{
				passwordCred("c1", "lock-1", "pw-1", credNow),
				certCred("c2", "lock-1", "der-1", credLater),
				passwordCred("c3", "lock-2", "pw-2", credNow),
			} {
				if err := st.AddDeviceCredential(ctx, c); err != nil {
					t.Fatalf("add %s: %v", c.ID, err)
				}
			}
			want := credLookups{Password1: true, Password2: true, CertThing: "lock-1", CertFound: true}
			if diff := cmp.Diff(want, lookups(t, st)); diff != "" {
				t.Errorf("lookups before the revoke (-want +got):\n%s", diff)
			}

			n, err := st.RevokeDeviceCredentials(ctx, "lock-1", credLatest)
			if err != nil || n != 2 {
				t.Fatalf("revoke lock-1: %d, %v; want 2, nil", n, err)
			}
			if n, err := st.RevokeDeviceCredentials(ctx, "lock-1", "2026-12-03T20:00:00.000Z"); err != nil || n != 0 {
				t.Fatalf("revoke lock-1 again: %d, %v; want 0, nil", n, err)
			}
			want = credLookups{Password2: true}
			if diff := cmp.Diff(want, lookups(t, st)); diff != "" {
				t.Errorf("lookups after the revoke (-want +got):\n%s", diff)
			}

			got, err := st.DeviceCredentials(ctx, "lock-1")
			if err != nil {
				t.Fatal(err)
			}
			wantRows := []store.DeviceCredential{
				{ID: "c1", Thing: "lock-1", Kind: "password", SecretHash: sha("pw-1"), CreatedAt: credNow, RevokedAt: credLatest},
				{ID: "c2", Thing: "lock-1", Kind: "certificate", Fingerprint: sha("der-1"), CreatedAt: credLater, RevokedAt: credLatest},
			}
			if diff := cmp.Diff(wantRows, got); diff != "" {
				t.Errorf("credentials of lock-1 (-want +got):\n%s", diff)
			}
			if got, err := st.DeviceCredentials(ctx, "lock-9"); err != nil || got == nil || len(got) != 0 {
				t.Errorf("credentials of an unknown thing: %#v, %v; want an empty list", got, err)
			}
			rows, err := store.DumpTable(st, "device_credentials")
			if err != nil {
				t.Fatal(err)
			}
			if all := strings.Join(rows, "\n"); strings.Contains(all, "pw-") || strings.Contains(all, "der-") {
				t.Errorf("the table holds a secret:\n%s", all)
			}
		})
	}
}

// TestAddDeviceCredentialRefuses checks that invalid credentials are
// refused before they reach the database, and that a taken id or
// fingerprint is refused with ErrDeviceCredentialExists, also when the
// duplicate is written in a batch with valid credentials (on PostgreSQL a
// failed pipeline, run again job by job), which are stored.
func TestAddDeviceCredentialRefuses(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st := testenv.OpenStore(t, b)
			if err := st.AddDeviceCredential(ctx, certCred("c1", "lock-1", "der-1", credNow)); err != nil {
				t.Fatal(err)
			}
			pw := passwordCred("p", "lock-1", "pw", credNow)
			invalid := map[string]func(c *store.DeviceCredential){
				"empty id":                    func(c *store.DeviceCredential) { c.ID = "" },
				"empty thing":                 func(c *store.DeviceCredential) { c.Thing = "" },
				"empty creation time":         func(c *store.DeviceCredential) { c.CreatedAt = "" },
				"already revoked":             func(c *store.DeviceCredential) { c.RevokedAt = credNow },
				"unknown kind":                func(c *store.DeviceCredential) { c.Kind = "token" },
				"plain password as hash":      func(c *store.DeviceCredential) { c.SecretHash = "hunter2" },
				"uppercase hash":              func(c *store.DeviceCredential) { c.SecretHash = strings.ToUpper(c.SecretHash) },
				"password with a fingerprint": func(c *store.DeviceCredential) { c.Fingerprint = sha("der") },
				"certificate with a hash": func(c *store.DeviceCredential) {
					c.Kind = store.DeviceCredentialCertificate
					c.Fingerprint = sha("der")
				},
				"certificate, no fingerprint":   func(c *store.DeviceCredential) { c.Kind = store.DeviceCredentialCertificate; c.SecretHash = "" },
				"password hash of wrong length": func(c *store.DeviceCredential) { c.SecretHash = c.SecretHash[:40] },
			}
			for name, mod := range invalid {
				c := pw
				mod(&c)
				err := st.AddDeviceCredential(ctx, c)
				if err == nil || errors.Is(err, store.ErrDeviceCredentialExists) {
					t.Errorf("%s: AddDeviceCredential(%+v) = %v; want a validation error", name, c, err)
				}
			}

			// Concurrent adds share the writer's batches.
			adds := []store.DeviceCredential{
				certCred("c2", "lock-2", "der-1", credNow), // fingerprint taken
				certCred("c1", "lock-2", "der-2", credNow), // id taken
			}
			for i := range 6 {
				adds = append(adds, passwordCred(fmt.Sprintf("ok-%d", i), "lock-3", fmt.Sprintf("pw-%d", i), credNow))
			}
			errs := make([]error, len(adds))
			var wg sync.WaitGroup
			for i, c := range adds {
				wg.Go(func() { errs[i] = st.AddDeviceCredential(ctx, c) })
			}
			wg.Wait()
			for i, err := range errs {
				if dup := i < 2; dup != errors.Is(err, store.ErrDeviceCredentialExists) || !dup && err != nil {
					t.Errorf("add %s: %v", adds[i].ID, err)
				}
			}
			got, err := st.DeviceCredentials(ctx, "lock-3")
			if err != nil || len(got) != 6 {
				t.Errorf("credentials of lock-3: %d, %v; want 6", len(got), err)
			}
			for _, thing := range []string{"lock-1", "lock-2"} {
				got, err := st.DeviceCredentials(ctx, thing)
				if err != nil {
					t.Fatal(err)
				}
				if want := map[string]int{"lock-1": 1, "lock-2": 0}[thing]; len(got) != want {
					t.Errorf("credentials of %s: %+v; want %d", thing, got, want)
				}
			}
		})
	}
}

// TestRebuildKeepsDeviceCredentials checks that device credentials, state
// beside the events, survive a rebuild of the read models.
func TestRebuildKeepsDeviceCredentials(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st := testenv.OpenStore(t, b)
			svc := app.New(st, app.Options{}, testenv.Discard())
			if _, err := svc.RegisterTenant(ctx, app.Call{P: app.Principal{Admin: true}, Route: "register"}, "acme", "Acme", ""); err != nil {
				t.Fatal(err)
			}
			if err := st.AddDeviceCredential(ctx, passwordCred("c1", "lock-1", "pw-1", credNow)); err != nil {
				t.Fatal(err)
			}
			if err := st.AddDeviceCredential(ctx, certCred("c2", "lock-1", "der-1", credNow)); err != nil {
				t.Fatal(err)
			}
			if _, err := st.RevokeDeviceCredentials(ctx, "lock-1", credLater); err != nil {
				t.Fatal(err)
			}
			if err := st.AddDeviceCredential(ctx, passwordCred("c3", "lock-1", "pw-3", credLatest)); err != nil {
				t.Fatal(err)
			}
			before, err := store.DumpTable(st, "device_credentials")
			if err != nil || len(before) != 3 {
				t.Fatalf("rows before the rebuild: %q, %v", before, err)
			}
			if err := svc.Rebuild(ctx); err != nil {
				t.Fatal(err)
			}
			after, err := store.DumpTable(st, "device_credentials")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(before, after); diff != "" {
				t.Errorf("device_credentials changed by the rebuild (-before +after):\n%s", diff)
			}
		})
	}
}
