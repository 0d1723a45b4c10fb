package ca_test

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/devices/ca"
)

// handshakeTimeout bounds every step of a test handshake.
const handshakeTimeout = 10 * time.Second

// result is what the broker's end of a test connection saw.
type result struct {
	thing string // Thing of the client's certificate, if any, after a handshake
	err   error
}

// handshake runs one real TLS connection over TCP on 127.0.0.1 between a
// listener with server and a client with client. The server answers "k"
// after a handshake it accepted. It returns what the server saw and the
// client's error (of dialing or of reading that answer).
func handshake(t *testing.T, server, client *tls.Config) (result, error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan result, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer conn.Close()
		tc := conn.(*tls.Conn)
		if err := tc.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
			done <- result{err: err}
			return
		}
		if err := tc.Handshake(); err != nil {
			done <- result{err: err}
			return
		}
		var r result
		if peers := tc.ConnectionState().PeerCertificates; len(peers) > 0 {
			r.thing = ca.Thing(peers[0])
		}
		_, r.err = tc.Write([]byte("k"))
		done <- r
	}()

	clientErr := func() error {
		dialer := &net.Dialer{Timeout: handshakeTimeout}
		conn, err := tls.DialWithDialer(dialer, "tcp", ln.Addr().String(), client)
		if err != nil {
			return err
		}
		defer conn.Close()
		if err := conn.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
			return err
		}
		// With TLS 1.3 the client learns that the server refused its
		// certificate only when it reads.
		buf := make([]byte, 1)
		if _, err := io.ReadFull(conn, buf); err != nil {
			return err
		}
		if string(buf) != "k" {
			return errors.New("unexpected answer " + string(buf))
		}
		return nil
	}()
	select {
	case r := <-done:
		return r, clientErr
	case <-time.After(handshakeTimeout):
		t.Fatal("server did not finish its handshake in time")
		return result{}, nil
	}
}

func TestHandshake(t *testing.T) {
	at := time.Now()
	// The CA is a day old, so that it can sign a certificate that expired.
	c, err := ca.New(at.Add(-24*time.Hour), ca.DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	server, err := c.ServerCert([]string{"localhost", "127.0.0.1"}, at, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(thing string, at time.Time) tls.Certificate {
		certPEM, keyPEM, _, err := c.IssueClient(thing, at, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}
	csrPEM, csrKey := newCSR(t, nil)
	signedPEM, _, err := c.SignCSR(csrPEM, "lock-csr", at, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	signed := tls.Certificate{Certificate: [][]byte{parseCert(t, signedPEM).Raw}, PrivateKey: csrKey}
	other, err := ca.New(at, "other CA")
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name          string
		client        *tls.Config
		wantThing     string // "": the handshake must fail on both ends
		wantVerifyErr bool   // the server's error is a certificate verification error
	}{
		{name: "issued client certificate", client: c.ClientTLS(issue("lock-1", at)), wantThing: "lock-1"},
		{name: "certificate from a CSR", client: c.ClientTLS(signed), wantThing: "lock-csr"},
		{name: "TLS 1.2", client: func() *tls.Config {
			cfg := c.ClientTLS(issue("lock-12", at))
			cfg.MaxVersion = tls.VersionTLS12
			return cfg
		}(), wantThing: "lock-12"},
		// A client sends a certificate whose issuer's name is the CA's...
		{name: "foreign CA's certificate", client: c.ClientTLS(foreignClient(t, ca.DefaultName, "lock-1")), wantVerifyErr: true},
		// ... and Go's would not send another, but a rogue client may.
		{name: "foreign CA's certificate, forced", client: func() *tls.Config {
			foreign := foreignClient(t, "foreign CA", "lock-1")
			return &tls.Config{RootCAs: c.Pool(), MinVersion: tls.VersionTLS12,
				GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &foreign, nil }}
		}(), wantVerifyErr: true},
		{name: "no certificate", client: &tls.Config{RootCAs: c.Pool(), MinVersion: tls.VersionTLS12}},
		{name: "expired certificate", client: c.ClientTLS(issue("lock-1", at.Add(-2*time.Hour))), wantVerifyErr: true},
		{name: "server certificate as client certificate", client: c.ClientTLS(server), wantVerifyErr: true},
		{name: "client trusting another CA", client: other.ClientTLS(issue("lock-1", at))},
		{name: "TLS 1.1", client: func() *tls.Config {
			cfg := c.ClientTLS(issue("lock-1", at))
			cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
			return cfg
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, clientErr := handshake(t, c.ServerTLS(server), tt.client)
			if tt.wantThing != "" {
				if got.err != nil || clientErr != nil || got.thing != tt.wantThing {
					t.Fatalf("server saw thing %q, error %v; client error %v; want thing %q and no errors",
						got.thing, got.err, clientErr, tt.wantThing)
				}
				return
			}
			if got.err == nil || clientErr == nil {
				t.Fatalf("server error %v, client error %v; want both to fail", got.err, clientErr)
			}
			var verr *tls.CertificateVerificationError
			if tt.wantVerifyErr && !errors.As(got.err, &verr) {
				t.Errorf("server error %v, want a certificate verification error", got.err)
			}
		})
	}
}
