package creds_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/spkey-dev/spkey/internal/devices/broker"
	"github.com/spkey-dev/spkey/internal/devices/ca"
	"github.com/spkey-dev/spkey/internal/devices/creds"
	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// validity is how long the test certificates are valid.
const validity = 24 * time.Hour

// env is a store on one backend, a device CA, and the Issuer and
// Authenticator over them.
type env struct {
	st     *store.Store
	ca     *ca.CA
	issuer *creds.Issuer
	auth   *creds.Authenticator
	// now is the wall clock: the TLS handshakes of the end-to-end test
	// check certificates against it.
	now time.Time
}

func newEnv(t *testing.T, b testenv.Backend) *env {
	t.Helper()
	now := time.Now()
	authority, err := ca.New(now, "spkey test device CA")
	if err != nil {
		t.Fatal(err)
	}
	st := testenv.OpenStore(t, b)
	return &env{
		st:     st,
		ca:     authority,
		issuer: creds.NewIssuer(st, authority),
		auth:   creds.NewAuthenticator(st, testenv.Logger(t)),
		now:    now,
	}
}

func parseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("not a PEM certificate: %q", certPEM)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// newCSR returns a PEM certificate signing request of a new key, as a
// device would make it.
func newCSR(t *testing.T, cn string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func sha(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// outcome is what the Authenticator answered: the thing, or whether it
// denied the credentials (ErrDenied) or failed otherwise.
type outcome struct {
	Thing  string
	Denied bool
	Failed bool
}

func outcomeOf(thing string, err error) outcome {
	return outcome{Thing: thing, Denied: errors.Is(err, broker.ErrDenied), Failed: err != nil && !errors.Is(err, broker.ErrDenied)}
}

var denied = outcome{Denied: true}

// TestPasswordAuthentication issues passwords to two things and checks
// who the Authenticator lets in: only a thing with its own valid password;
// not a wrong password, another thing's, the stored hash, or any password
// after the thing's credentials were revoked, until a new one is issued.
func TestPasswordAuthentication(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			e := newEnv(t, b)
			user1, pw1, err := e.issuer.IssuePassword(ctx, "lock-1", e.now)
			if err != nil {
				t.Fatal(err)
			}
			_, pw2, err := e.issuer.IssuePassword(ctx, "lock-2", e.now)
			if err != nil {
				t.Fatal(err)
			}
			if user1 != "lock-1" {
				t.Errorf("username %q, want the thing name lock-1", user1)
			}
			if raw, err := base64.RawURLEncoding.DecodeString(pw1); err != nil || len(raw) != 32 {
				t.Errorf("password %q: %d bytes, %v; want 32 random bytes, base64url", pw1, len(raw), err)
			}
			if pw1 == pw2 {
				t.Errorf("two things got the same password")
			}
			check := func(stage string, cases []struct {
				name, user, pw string
				want           outcome
			}) {
				t.Helper()
				for _, c := range cases {
					thing, err := e.auth.Password(ctx, c.user, []byte(c.pw))
					if diff := cmp.Diff(c.want, outcomeOf(thing, err)); diff != "" {
						t.Errorf("%s: %s: Password(%q) (-want +got):\n%s", stage, c.name, c.user, diff)
					}
				}
			}
			type tc = struct {
				name, user, pw string
				want           outcome
			}
			check("issued", []tc{
				{"own password", "lock-1", pw1, outcome{Thing: "lock-1"}},
				{"other thing's own password", "lock-2", pw2, outcome{Thing: "lock-2"}},
				{"wrong password", "lock-1", pw1 + "x", denied},
				{"another thing's name with this password", "lock-2", pw1, denied},
				{"unknown thing with this password", "lock-9", pw1, denied},
				{"the stored hash as password", "lock-1", sha([]byte(pw1)), denied},
				{"empty password", "lock-1", "", denied},
				{"invalid thing name", "lock/1", pw1, denied},
			})

			if err := e.issuer.Revoke(ctx, "lock-1", e.now.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			check("revoked", []tc{
				{"revoked password", "lock-1", pw1, denied},
				{"other thing untouched", "lock-2", pw2, outcome{Thing: "lock-2"}},
			})

			_, pw3, err := e.issuer.IssuePassword(ctx, "lock-1", e.now.Add(2*time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			check("reissued", []tc{
				{"new password", "lock-1", pw3, outcome{Thing: "lock-1"}},
				{"revoked password stays revoked", "lock-1", pw1, denied},
			})

			// A lookup that cannot be made is a failure, not a denial.
			cancelled, cancel := context.WithCancel(ctx)
			cancel()
			if thing, err := e.auth.Password(cancelled, "lock-1", []byte(pw3)); outcomeOf(thing, err) != (outcome{Failed: true}) {
				t.Errorf("Password with a cancelled context = %q, %v; want an error that is not ErrDenied", thing, err)
			}
		})
	}
}

// TestCertificateAuthentication issues a certificate and signs a CSR for
// a thing and checks that the Authenticator accepts them by fingerprint,
// and denies a certificate of the same CA that was never registered, one
// stored for another thing than its common name, and revoked ones.
func TestCertificateAuthentication(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			e := newEnv(t, b)
			certPEM, keyPEM, err := e.issuer.IssueCertificate(ctx, "lock-1", e.now, validity)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
				t.Fatalf("issued certificate and key do not pair: %v", err)
			}
			issued := parseCert(t, certPEM)
			signedPEM, err := e.issuer.SignCSR(ctx, "lock-1", newCSR(t, "whatever-the-device-asks"), e.now, validity)
			if err != nil {
				t.Fatal(err)
			}
			signed := parseCert(t, signedPEM)
			unregPEM, _, _, err := e.ca.IssueClient("lock-1", e.now, validity) // same CA, never stored
			if err != nil {
				t.Fatal(err)
			}
			unregistered := parseCert(t, unregPEM)
			// A certificate of lock-3 stored as lock-4's: its common name
			// and the stored thing disagree.
			strayPEM, _, strayFP, err := e.ca.IssueClient("lock-3", e.now, validity)
			if err != nil {
				t.Fatal(err)
			}
			stray := parseCert(t, strayPEM)
			if err := e.st.AddDeviceCredential(ctx, store.DeviceCredential{ID: "stray", Thing: "lock-4",
				Kind: store.DeviceCredentialCertificate, Fingerprint: strayFP, CreatedAt: e.now.UTC().Format(domain.TimeLayout)}); err != nil {
				t.Fatal(err)
			}

			certs := map[string]*x509.Certificate{"issued": issued, "signed": signed, "unregistered": unregistered, "stray": stray}
			got := func() map[string]outcome {
				out := map[string]outcome{}
				for name, c := range certs {
					out[name] = outcomeOf(e.auth.Certificate(ctx, c))
				}
				return out
			}
			want := map[string]outcome{"issued": {Thing: "lock-1"}, "signed": {Thing: "lock-1"}, "unregistered": denied, "stray": denied}
			if diff := cmp.Diff(want, got()); diff != "" {
				t.Errorf("before the revoke (-want +got):\n%s", diff)
			}
			if thing, err := e.auth.Certificate(ctx, nil); outcomeOf(thing, err) != denied {
				t.Errorf("Certificate(nil) = %q, %v; want ErrDenied", thing, err)
			}

			if err := e.issuer.Revoke(ctx, "lock-1", e.now.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			want["issued"], want["signed"] = denied, denied
			if diff := cmp.Diff(want, got()); diff != "" {
				t.Errorf("after the revoke (-want +got):\n%s", diff)
			}
		})
	}
}

// TestStoredCredentialsHoldNoSecret issues a password, a certificate and
// a signed CSR and reads the thing's stored credentials back: they hold
// the password's SHA-256 and the certificates' fingerprints, and neither
// the password nor the private key.
func TestStoredCredentialsHoldNoSecret(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			e := newEnv(t, b)
			at := func(d time.Duration) time.Time { return e.now.Add(d) }
			_, pw, err := e.issuer.IssuePassword(ctx, "lock-1", at(0))
			if err != nil {
				t.Fatal(err)
			}
			certPEM, keyPEM, err := e.issuer.IssueCertificate(ctx, "lock-1", at(time.Second), validity)
			if err != nil {
				t.Fatal(err)
			}
			signedPEM, err := e.issuer.SignCSR(ctx, "lock-1", newCSR(t, "lock-1"), at(2*time.Second), validity)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.issuer.Revoke(ctx, "lock-1", at(time.Hour)); err != nil {
				t.Fatal(err)
			}
			stamp := func(d time.Duration) string { return at(d).UTC().Format(domain.TimeLayout) }
			want := []store.DeviceCredential{
				{Thing: "lock-1", Kind: "password", SecretHash: sha([]byte(pw)), CreatedAt: stamp(0), RevokedAt: stamp(time.Hour)},
				{Thing: "lock-1", Kind: "certificate", Fingerprint: ca.Fingerprint(parseCert(t, certPEM)), CreatedAt: stamp(time.Second), RevokedAt: stamp(time.Hour)},
				{Thing: "lock-1", Kind: "certificate", Fingerprint: ca.Fingerprint(parseCert(t, signedPEM)), CreatedAt: stamp(2 * time.Second), RevokedAt: stamp(time.Hour)},
			}
			got, err := e.st.DeviceCredentials(ctx, "lock-1")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(store.DeviceCredential{}, "ID")); diff != "" {
				t.Errorf("stored credentials (-want +got):\n%s", diff)
			}
			// The key's base64 body, without the PEM armour.
			keyBody := strings.Join(strings.Split(string(keyPEM), "\n")[1:3], "")
			for _, c := range got {
				row := strings.Join([]string{c.ID, c.Thing, c.Kind, c.SecretHash, c.Fingerprint, c.CreatedAt, c.RevokedAt}, "|")
				if strings.Contains(row, pw) || strings.Contains(row, keyBody) {
					t.Errorf("stored credential %+v holds a secret", c)
				}
			}
		})
	}
}

// TestIssuerRefuses checks that a bad thing name or CSR is refused with
// the CA's error and stores nothing.
func TestIssuerRefuses(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, testenv.SQLite)
	if _, _, err := e.issuer.IssuePassword(ctx, "lock/1", e.now); !errors.Is(err, ca.ErrInvalidThing) {
		t.Errorf("IssuePassword(lock/1): %v, want ErrInvalidThing", err)
	}
	if _, _, err := e.issuer.IssueCertificate(ctx, "lock/1", e.now, validity); !errors.Is(err, ca.ErrInvalidThing) {
		t.Errorf("IssueCertificate(lock/1): %v, want ErrInvalidThing", err)
	}
	if _, err := e.issuer.SignCSR(ctx, "lock-1", []byte("not a CSR"), e.now, validity); !errors.Is(err, ca.ErrInvalidCSR) {
		t.Errorf("SignCSR(garbage): %v, want ErrInvalidCSR", err)
	}
	for _, thing := range []string{"lock/1", "lock-1"} {
		if got, err := e.st.DeviceCredentials(ctx, thing); err != nil || len(got) != 0 {
			t.Errorf("credentials of %s: %+v, %v; want none", thing, got, err)
		}
	}
}

// TestDenialsAreLogged checks what a denial leaves in the log: the thing
// and the reason, never the password that was offered or the valid one.
func TestDenialsAreLogged(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, testenv.SQLite)
	var buf bytes.Buffer
	auth := creds.NewAuthenticator(e.st, slog.New(slog.NewTextHandler(&buf, nil)))
	_, pw, err := e.issuer.IssuePassword(ctx, "lock-1", e.now)
	if err != nil {
		t.Fatal(err)
	}
	wrong := pw[:len(pw)-1] + "A"
	if wrong == pw {
		wrong = pw[:len(pw)-1] + "B"
	}
	if _, err := auth.Password(ctx, "lock-1", []byte(wrong)); !errors.Is(err, broker.ErrDenied) {
		t.Fatalf("wrong password: %v, want ErrDenied", err)
	}
	if err := e.issuer.Revoke(ctx, "lock-1", e.now); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.Password(ctx, "lock-1", []byte(pw)); !errors.Is(err, broker.ErrDenied) {
		t.Fatalf("revoked password: %v, want ErrDenied", err)
	}
	log := buf.String()
	if n := strings.Count(log, "thing=lock-1"); n != 2 {
		t.Errorf("log has %d denials of thing=lock-1, want 2:\n%s", n, log)
	}
	for name, secret := range map[string]string{"offered": wrong, "valid": pw, "valid's hash": sha([]byte(pw))} {
		if strings.Contains(log, secret) || strings.Contains(log, secret[:16]) {
			t.Errorf("log holds the %s password:\n%s", name, log)
		}
	}
}
