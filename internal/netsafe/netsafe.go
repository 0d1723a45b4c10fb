// Package netsafe decides which outbound URLs spkey may call on behalf of
// others (partner webhooks, the doorbell's outgoing hook), provides an
// HTTP client that holds to that decision on every connection, and reads
// those endpoints' answers with care (Snippet, RetryAfter, Redact).
//
// A URL must be https (http only when the operator allows it) and, unless
// the operator allows private targets, must not point at loopback,
// private, link-local or otherwise non-public addresses. CheckURL refuses
// such a URL when it is entered; the dialer of Client refuses such an
// address when connecting, which is the check that counts: a name may
// resolve to a public address when checked and to 127.0.0.1 a second
// later (DNS rebinding).
package netsafe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
)

// The operator settings named in refusals, so that an API user can tell
// the operator what to change.
const (
	allowHTTPHint    = "(the operator can allow http with SPKEY_WEBHOOK_ALLOW_HTTP=true)"
	allowPrivateHint = "(the operator can allow private targets with SPKEY_WEBHOOK_ALLOW_PRIVATE=true)"
)

// ErrRefused is matched (errors.Is) by every error that refuses a URL or
// an address because of the Policy, from CheckURL and from the dialer of
// Client. The error's own text is a sentence for the API user.
var ErrRefused = errors.New("refused by the outbound URL policy")

// refusal is an error matching ErrRefused whose text is only the reason.
type refusal struct{ msg string }

func (e *refusal) Error() string { return e.msg }

func (e *refusal) Unwrap() error { return ErrRefused }

func refuse(format string, args ...any) error { return &refusal{msg: fmt.Sprintf(format, args...)} }

// Policy is what the operator allows for outbound URLs. The zero value is
// the strict one: https to public addresses only.
type Policy struct {
	// AllowHTTP (SPKEY_WEBHOOK_ALLOW_HTTP) allows http besides https, for
	// local development.
	AllowHTTP bool
	// AllowPrivate (SPKEY_WEBHOOK_ALLOW_PRIVATE) allows targets that are
	// not public addresses (loopback, private networks, link-local, ...).
	AllowPrivate bool
	// Resolver resolves host names, in CheckURL and in the dialer of
	// Client; nil means net.DefaultResolver.
	Resolver *net.Resolver
}

func (p Policy) resolver() *net.Resolver {
	if p.Resolver != nil {
		return p.Resolver
	}
	return net.DefaultResolver
}

// CheckURL parses raw and returns it when the policy allows it: an absolute
// https URL (http with AllowHTTP) with a host and without user info or
// fragment, whose host, unless AllowPrivate, is a public address or a name
// all of whose addresses are public. The name is resolved with ctx.
//
// A URL refused by the policy gives an error matching ErrRefused. A name
// that does not resolve gives an error wrapping the resolver's
// (*net.DNSError), which does not match ErrRefused.
func (p Policy) CheckURL(ctx context.Context, raw string) (*url.URL, error) {
	if raw == "" {
		return nil, refuse("url is empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// The url.Error repeats raw, which may hold a password.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, refuse("url is not a valid URL: %v", err)
	}
	if !u.IsAbs() {
		return nil, refuse("url must be absolute, starting with https://")
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && p.AllowHTTP:
	case u.Scheme == "http":
		return nil, refuse("url must use https %s", allowHTTPHint)
	case p.AllowHTTP:
		return nil, refuse("url must use http or https, not %s", u.Scheme)
	default:
		return nil, refuse("url must use https, not %s", u.Scheme)
	}
	if u.User != nil {
		return nil, refuse("url must not contain a user name or password (user:pass@)")
	}
	if strings.Contains(raw, "#") {
		return nil, refuse("url must not contain a fragment (#...)")
	}
	host := u.Hostname()
	if host == "" {
		return nil, refuse("url must have a host")
	}
	if p.AllowPrivate {
		return u, nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if kind := classify(ip); kind != "" {
			return nil, refuse("url host %s is %s %s", host, kind, allowPrivateHint)
		}
		return u, nil
	}
	ips, err := p.resolver().LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("url host %s could not be resolved: %w", host, err)
	}
	for _, ip := range ips {
		if kind := classify(ip); kind != "" {
			return nil, refuse("url host %s resolves to %s, %s %s", host, ip.Unmap().WithZone(""), kind, allowPrivateHint)
		}
	}
	return u, nil
}

// Public reports whether ip is a public unicast address, one that may be
// the target of an outbound request when private targets are not allowed.
// It is false for loopback, private (RFC 1918, fc00::/7), link-local,
// unspecified, multicast, broadcast, shared (100.64.0.0/10), documentation,
// benchmarking and reserved addresses, for IPv4-mapped, 6to4 and NAT64
// (64:ff9b::/96) forms of those, and for IPv6 outside 2000::/3.
func Public(ip netip.Addr) bool { return classify(ip) == "" }

type special struct {
	prefix netip.Prefix
	kind   string // with its article: "a private address"
}

func specials(kv ...string) []special {
	s := make([]special, 0, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		s = append(s, special{netip.MustParsePrefix(kv[i]), kv[i+1]})
	}
	return s
}

// The IANA special-purpose address registries, as far as they are not
// public destinations. The first match names the kind in messages.
var (
	specialV4 = specials(
		"0.0.0.0/32", "an unspecified address",
		"0.0.0.0/8", "a \"this network\" address",
		"10.0.0.0/8", "a private address",
		"100.64.0.0/10", "a shared (carrier-grade NAT) address",
		"127.0.0.0/8", "a loopback address",
		"169.254.0.0/16", "a link-local address",
		"172.16.0.0/12", "a private address",
		"192.0.0.0/24", "a reserved address",
		"192.0.2.0/24", "a documentation address",
		"192.88.99.0/24", "a reserved address",
		"192.168.0.0/16", "a private address",
		"198.18.0.0/15", "a benchmarking address",
		"198.51.100.0/24", "a documentation address",
		"203.0.113.0/24", "a documentation address",
		"224.0.0.0/4", "a multicast address",
		"255.255.255.255/32", "a broadcast address",
		"240.0.0.0/4", "a reserved address",
	)
	specialV6 = specials(
		"::/128", "an unspecified address",
		"::1/128", "a loopback address",
		"::/96", "a reserved address", // IPv4-compatible, deprecated
		"fc00::/7", "a private address",
		"fe80::/10", "a link-local address",
		"fec0::/10", "a site-local address", // deprecated
		"ff00::/8", "a multicast address",
		"2001::/23", "a reserved address", // IETF protocol assignments, Teredo
		"2001:db8::/32", "a documentation address",
		"3fff::/20", "a documentation address",
	)
	globalV6  = netip.MustParsePrefix("2000::/3")
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// classify returns "" for a public address, else what it is, with its
// article ("a loopback address").
func classify(ip netip.Addr) string {
	ip = ip.WithZone("")
	switch {
	case !ip.IsValid():
		return "an invalid address"
	case ip.Is4In6():
		return classify(ip.Unmap())
	case ip.Is4():
		for _, s := range specialV4 {
			if s.prefix.Contains(ip) {
				return s.kind
			}
		}
		return ""
	}
	b := ip.As16()
	switch {
	case nat64.Contains(ip):
		// Translated to the IPv4 address in its last 32 bits.
		return classify(netip.AddrFrom4([4]byte(b[12:])))
	case sixToFour.Contains(ip):
		// Tunnelled to the IPv4 address in bits 16 to 48.
		return classify(netip.AddrFrom4([4]byte(b[2:6])))
	}
	for _, s := range specialV6 {
		if s.prefix.Contains(ip) {
			return s.kind
		}
	}
	if !globalV6.Contains(ip) {
		return "a reserved address"
	}
	return ""
}

// Client returns an HTTP client for outbound requests under p: requests
// time out after timeout, redirects are never followed (a 3xx comes back as
// the response), no proxy is used, and, unless p.AllowPrivate, the dialer
// refuses to connect to an address that is not Public whatever the name
// resolved to; such a request fails with an error matching ErrRefused that
// says the address is not allowed. tlsConf (may be nil) configures TLS,
// e.g. RootCAs; it is cloned.
func (p Policy) Client(timeout time.Duration, tlsConf *tls.Config) *http.Client {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Resolver: p.Resolver}
	if !p.AllowPrivate {
		d.ControlContext = controlPublic
	}
	tr := &http.Transport{
		Proxy:                 nil, // a proxy would be the address checked, not the target
		DialContext:           d.DialContext,
		TLSClientConfig:       tlsConf.Clone(),
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   8, // up to 4 requests in flight per webhook, several webhooks per host
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// controlPublic runs before each connect, with the address the name
// resolved to: the last moment to refuse it.
func controlPublic(_ context.Context, _, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return refuse("address %s is not allowed: it is not an IP address and port", address)
	}
	if kind := classify(ap.Addr()); kind != "" {
		return refuse("address %s is not allowed: it is %s %s", ap.Addr().WithZone(""), kind, allowPrivateHint)
	}
	return nil
}

// The answers of the endpoints spkey calls on behalf of others are read
// with the same care as their URLs are chosen: a bounded, printable
// snippet for the delivery log, a bounded Retry-After, and errors that do
// not repeat a URL that may carry a token.

// Snippet returns the start of a receiver's answer, one line of at most
// 200 bytes of valid UTF-8, for a delivery log.
func Snippet(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 200))
	s := strings.ToValidUTF8(string(b), "")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}

// RetryAfter reads a Retry-After header: delay-seconds (at most a year) or
// an HTTP date. Zero when absent, malformed or in the past.
func RetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, int64(365*24*3600))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// Redact drops the URL from an HTTP client error: it may carry a token in
// its query or user info.
func Redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
