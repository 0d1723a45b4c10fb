package netsafe_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/netsafe"
	"github.com/spkey-dev/spkey/internal/netsafe/netsafetest"
)

// A public address for the test DNS server to answer with; nothing
// connects to it.
var publicIP = netip.MustParseAddr("1.1.1.1")

func TestPublic(t *testing.T) {
	for _, c := range []struct {
		ip   string
		want bool
	}{
		{"1.1.1.1", true},
		{"8.8.8.8", true},
		{"100.63.255.255", true},
		{"100.128.0.0", true},
		{"172.32.0.1", true},
		{"223.255.255.255", true},
		{"0.0.0.0", false},
		{"0.1.2.3", false},
		{"10.0.0.7", false},
		{"100.64.0.1", false},
		{"127.0.0.1", false},
		{"127.255.255.254", false},
		{"169.254.169.254", false},
		{"172.16.0.1", false},
		{"172.31.255.255", false},
		{"192.0.2.1", false},
		{"192.168.1.1", false},
		{"198.18.0.1", false},
		{"224.0.0.1", false},
		{"240.0.0.1", false},
		{"255.255.255.255", false},

		{"2606:4700:4700::1111", true},
		{"2a00:1450:4001::200e", true},
		{"::", false},
		{"::1", false},
		{"::127.0.0.1", false}, // IPv4-compatible
		{"::8.8.8.8", false},
		{"fc00::1", false},
		{"fd12:3456::1", false},
		{"fe80::1", false},
		{"fe80::1%eth0", false},
		{"fec0::1", false},
		{"ff02::1", false},
		{"2001:db8::1", false},
		{"2001::1", false}, // Teredo
		{"100::1", false},
		{"4000::1", false},

		{"::ffff:8.8.8.8", true},
		{"::ffff:127.0.0.1", false},
		{"::ffff:10.0.0.7", false},
		{"::ffff:169.254.169.254", false},
		{"64:ff9b::8.8.8.8", true},
		{"64:ff9b::127.0.0.1", false},
		{"64:ff9b::a00:7", false},
		{"64:ff9b:1::8.8.8.8", false}, // local-use NAT64
		{"2002:808:808::1", true},     // 6to4 of 8.8.8.8
		{"2002:7f00:1::1", false},     // 6to4 of 127.0.0.1
		{"2002:c0a8:101::1", false},   // 6to4 of 192.168.1.1
	} {
		if got := netsafe.Public(netip.MustParseAddr(c.ip)); got != c.want {
			t.Errorf("Public(%s) = %v, want %v", c.ip, got, c.want)
		}
	}
	if netsafe.Public(netip.Addr{}) {
		t.Error("Public(zero Addr) = true")
	}
}

// TestCheckURL: what each policy lets through, and the sentences that
// refuse the rest. Names resolve on a real DNS server of the test.
func TestCheckURL(t *testing.T) {
	ctx := context.Background()
	dns := netsafetest.NewDNS(t, publicIP)
	strict := netsafe.Policy{Resolver: dns.Resolver()}
	httpOK := netsafe.Policy{AllowHTTP: true, Resolver: dns.Resolver()}
	private := netsafe.Policy{AllowPrivate: true, Resolver: dns.Resolver()}
	both := netsafe.Policy{AllowHTTP: true, AllowPrivate: true, Resolver: dns.Resolver()}
	for _, c := range []struct {
		name string
		p    netsafe.Policy
		raw  string
		want string // "" accepted, else part of the refusal
	}{
		{"https name", strict, "https://hooks.example.com/ring?x=1", ""},
		{"https public IP", strict, "https://8.8.8.8:8443/ring", ""},
		{"https public IPv6", strict, "https://[2606:4700:4700::1111]/ring", ""},
		{"upper-case scheme", strict, "HTTPS://hooks.example.com/", ""},
		{"http", strict, "http://hooks.example.com/ring", "url must use https (the operator can allow http with SPKEY_WEBHOOK_ALLOW_HTTP=true)"},
		{"http allowed", httpOK, "http://hooks.example.com/ring", ""},
		{"ftp", strict, "ftp://hooks.example.com/x", "url must use https, not ftp"},
		{"ftp with http allowed", httpOK, "ftp://hooks.example.com/x", "url must use http or https, not ftp"},
		{"empty", strict, "", "url is empty"},
		{"relative", strict, "/ring", "url must be absolute"},
		{"no scheme", strict, "hooks.example.com/ring", "url must be absolute"},
		{"no host", strict, "https:///ring", "url must have a host"},
		{"opaque", strict, "https:hooks.example.com", "url must have a host"},
		{"bad port", strict, "https://user:hunter2@hooks.example.com:port/", "url is not a valid URL"},
		{"userinfo", both, "https://user:hunter2@hooks.example.com/", "url must not contain a user name or password"},
		{"user only", both, "https://user@hooks.example.com/", "url must not contain a user name or password"},
		{"fragment", both, "https://hooks.example.com/#top", "url must not contain a fragment"},
		{"empty fragment", both, "https://hooks.example.com/#", "url must not contain a fragment"},
		{"loopback", strict, "https://127.0.0.1:8443/", "url host 127.0.0.1 is a loopback address (the operator can allow private targets with SPKEY_WEBHOOK_ALLOW_PRIVATE=true)"},
		{"private", strict, "https://10.0.0.7/", "url host 10.0.0.7 is a private address"},
		{"metadata", strict, "https://169.254.169.254/latest/meta-data", "is a link-local address"},
		{"unspecified", strict, "https://0.0.0.0/", "is an unspecified address"},
		{"IPv6 loopback", strict, "https://[::1]/", "url host ::1 is a loopback address"},
		{"mapped loopback", strict, "https://[::ffff:127.0.0.1]/", "is a loopback address"},
		{"NAT64 private", strict, "https://[64:ff9b::10.0.0.7]/", "is a private address"},
		{"link-local zone", strict, "https://[fe80::1%25eth0]/", "is a link-local address"},
		{"localhost", strict, "https://localhost:8443/", "url host localhost resolves to "}, // 127.0.0.1 or ::1
		{"loopback allowed", private, "https://127.0.0.1:8443/", ""},
		{"localhost allowed", private, "https://localhost/", ""},
		{"http loopback allowed", both, "http://127.0.0.1:8080/ring", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			u, err := c.p.CheckURL(ctx, c.raw)
			if c.want == "" {
				if err != nil || u == nil {
					t.Fatalf("CheckURL(%q) = %v, %v; want it accepted", c.raw, u, err)
				}
				if u.String() != c.raw && !strings.EqualFold(u.String(), c.raw) {
					t.Errorf("CheckURL(%q) returned %q", c.raw, u)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, netsafe.ErrRefused) || u != nil {
				t.Fatalf("CheckURL(%q) = %v, %v; want a refusal with %q", c.raw, u, err, c.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the refusal repeats the password: %v", err)
			}
		})
	}
}

// TestCheckURLResolved: a name is refused when any of its addresses is not
// public; one that does not resolve is an error that is not a refusal.
func TestCheckURLResolved(t *testing.T) {
	ctx := context.Background()
	dns := netsafetest.NewDNS(t, netip.MustParseAddr("10.0.0.7"))
	p := netsafe.Policy{Resolver: dns.Resolver()}
	_, err := p.CheckURL(ctx, "https://example.internal/hook")
	want := "url host example.internal resolves to 10.0.0.7, a private address (the operator can allow private targets with SPKEY_WEBHOOK_ALLOW_PRIVATE=true)"
	if err == nil || err.Error() != want || !errors.Is(err, netsafe.ErrRefused) {
		t.Errorf("got %v, want %q", err, want)
	}
	dns.Set(netip.MustParseAddr("fd00::7"))
	if _, err := p.CheckURL(ctx, "https://example.internal/hook"); err == nil || !strings.Contains(err.Error(), "resolves to fd00::7, a private address") {
		t.Errorf("IPv6 answer: got %v", err)
	}

	// A resolver that finds nothing: an empty answer to A and AAAA.
	dns.Set(netip.Addr{})
	_, err = p.CheckURL(ctx, "https://nowhere.example/hook")
	var dnsErr *net.DNSError
	if err == nil || errors.Is(err, netsafe.ErrRefused) || !errors.As(err, &dnsErr) || !strings.Contains(err.Error(), "url host nowhere.example could not be resolved") {
		t.Errorf("unresolvable: got %v", err)
	}
	// AllowPrivate does not resolve at all.
	before := dns.Queries()
	if _, err := (netsafe.Policy{AllowPrivate: true, Resolver: dns.Resolver()}).CheckURL(ctx, "https://nowhere.example/hook"); err != nil || dns.Queries() != before {
		t.Errorf("AllowPrivate: %v, %d queries", err, dns.Queries()-before)
	}
}

// server is a real HTTP server on 127.0.0.1 counting its requests.
type server struct {
	*httptest.Server
	hits atomic.Int32
}

func newServer(t *testing.T, tlsOn bool, h http.HandlerFunc) *server {
	s := &server{}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		h(w, r)
	})
	s.Server = httptest.NewUnstartedServer(handler)
	// The refused and untrusted handshakes are expected.
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	if tlsOn {
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	return s
}

func ok(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }

// TestClientRefusesPrivate: without AllowPrivate the dialer refuses
// 127.0.0.1 at once, saying why, and the server sees nothing; with it the
// request goes through.
func TestClientRefusesPrivate(t *testing.T) {
	srv := newServer(t, false, ok)
	start := time.Now()
	resp, err := netsafe.Policy{AllowHTTP: true}.Client(5*time.Second, nil).Get(srv.URL + "/x")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("status %s, want the connection refused", resp.Status)
	}
	if !errors.Is(err, netsafe.ErrRefused) || !strings.Contains(err.Error(), "address 127.0.0.1 is not allowed: it is a loopback address") ||
		!strings.Contains(err.Error(), "SPKEY_WEBHOOK_ALLOW_PRIVATE=true") {
		t.Errorf("error %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("refused after %s, want at once", d)
	}
	if n := srv.hits.Load(); n != 0 {
		t.Errorf("the server saw %d requests", n)
	}

	resp, err = netsafe.Policy{AllowPrivate: true}.Client(5*time.Second, nil).Get(srv.URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" || srv.hits.Load() != 1 {
		t.Errorf("AllowPrivate: %s %q, %d requests", resp.Status, body, srv.hits.Load())
	}
}

// TestClientDNSRebinding: a name that resolved to a public address when
// the URL was checked and to 127.0.0.1 when connecting is refused by the
// dialer.
func TestClientDNSRebinding(t *testing.T) {
	srv := newServer(t, false, ok)
	dns := netsafetest.NewDNS(t, publicIP)
	p := netsafe.Policy{AllowHTTP: true, Resolver: dns.Resolver()}
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	raw := "http://rebind.example:" + u.Port() + "/hook"
	if _, err := p.CheckURL(context.Background(), raw); err != nil {
		t.Fatalf("CheckURL while public: %v", err)
	}
	dns.Set(netip.MustParseAddr("127.0.0.1"))
	resp, err := p.Client(5*time.Second, nil).Get(raw)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("status %s, want the connection refused", resp.Status)
	}
	if !errors.Is(err, netsafe.ErrRefused) || !strings.Contains(err.Error(), "address 127.0.0.1 is not allowed") {
		t.Errorf("error %v", err)
	}
	if n := srv.hits.Load(); n != 0 {
		t.Errorf("the server saw %d requests", n)
	}
}

// TestClientNoRedirects: a 3xx comes back as the response; its target is
// never asked.
func TestClientNoRedirects(t *testing.T) {
	var followed atomic.Bool
	srv := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/final" {
			followed.Store(true)
		}
		http.Redirect(w, r, "/final", http.StatusFound)
	})
	resp, err := netsafe.Policy{AllowHTTP: true, AllowPrivate: true}.Client(5*time.Second, nil).Get(srv.URL + "/start")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/final" || followed.Load() || srv.hits.Load() != 1 {
		t.Errorf("%s Location %q, followed %v, %d requests", resp.Status, resp.Header.Get("Location"), followed.Load(), srv.hits.Load())
	}
}

// TestClientTLS: RootCAs from the test server's own client make its
// certificate trusted; the dial check still applies to https.
func TestClientTLS(t *testing.T) {
	srv := newServer(t, true, ok)
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	tlsConf := &tls.Config{RootCAs: roots}
	resp, err := netsafe.Policy{AllowPrivate: true}.Client(5*time.Second, tlsConf).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" || resp.TLS == nil {
		t.Errorf("%s %q TLS %v", resp.Status, body, resp.TLS != nil)
	}

	// Without the roots the certificate is not trusted.
	if resp, err := (netsafe.Policy{AllowPrivate: true}).Client(5*time.Second, nil).Get(srv.URL); err == nil {
		resp.Body.Close()
		t.Error("an untrusted certificate was accepted")
	}
	before := srv.hits.Load()
	if resp, err := (netsafe.Policy{}).Client(5*time.Second, tlsConf).Get(srv.URL); err == nil || !errors.Is(err, netsafe.ErrRefused) {
		if err == nil {
			resp.Body.Close()
		}
		t.Errorf("https to 127.0.0.1 without AllowPrivate: %v", err)
	}
	if srv.hits.Load() != before {
		t.Error("the server saw the refused request")
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"": 0, "7": 7 * time.Second, "0": 0, "-3": 0, "soon": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Minute).Format(http.TimeFormat):     0,
	} {
		if got := netsafe.RetryAfter(v, now); got != want {
			t.Errorf("RetryAfter(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestSnippet(t *testing.T) {
	long := strings.Repeat("x", 500)
	if got := netsafe.Snippet(strings.NewReader(" bad\ngateway\x00 " + long)); len(got) > 200 || strings.ContainsAny(got, "\n\x00") || !strings.HasPrefix(got, "bad gateway") {
		t.Fatalf("snippet %q", got)
	}
}
