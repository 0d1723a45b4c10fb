// Package broker is the embedded MQTT broker of a spkey node: locks
// connect to it as AWS-IoT-style things and talk to their device shadow
// on $aws/things/{thing}/..., and the node talks to them through
// Subscribe and Publish.
//
// Every device connection authenticates as one thing (a password on the
// plain listener, an X.509 client certificate on the TLS listener) and
// keeps that identity for its whole life. A device may publish and
// subscribe only under $aws/things/{thing}/ of its own thing; its client
// id must be its thing name (an empty one is given the thing name), so a
// second connection of the same thing takes over the first. The node's
// own side (Subscribe, Publish) is not subject to that rule.
//
// Bounds: a maximum payload (128 KiB by default; a larger publish closes
// the connection), a maximum number of connected devices, a deadline from
// accept to CONNECT (TLS handshake included), no topic aliases, and no
// retained messages: a retained publish or will is delivered to current
// subscribers but never stored, and a CONNECT whose will asks to be
// retained is refused. Shadow state lives in the node, not in the broker,
// so nothing a device says outlives its delivery.
package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Defaults of Config's zero fields.
const (
	DefaultMaxPayload     = 128 << 10
	DefaultMaxClients     = 10000
	DefaultConnectTimeout = 10 * time.Second
	DefaultAuthTimeout    = 5 * time.Second
	DefaultSessionExpiry  = time.Hour
)

// ErrClosed is returned by Publish after Close.
var ErrClosed = errors.New("broker closed")

// packetOverhead is what a PUBLISH may carry besides its payload (fixed
// header, topic, packet id, MQTT 5 properties) before the broker closes
// the connection at the packet level; the payload itself is bounded
// exactly by MaxPayload.
const packetOverhead = 8 << 10

// Config configures Start.
type Config struct {
	// Addr is the plain TCP listener (username/password devices), e.g.
	// ":1883" or "127.0.0.1:0"; empty: none.
	Addr string
	// TLSAddr is the TLS listener (client-certificate devices); empty:
	// none. It needs TLS.
	TLSAddr string
	// TLS is the TLS listener's configuration. It must require and verify
	// client certificates (ClientAuth tls.RequireAndVerifyClientCert with
	// ClientCAs): the broker refuses to start otherwise.
	TLS *tls.Config
	// Auth decides who a connecting device is. Required.
	Auth Authenticator
	// Log receives the broker's records; nil discards them.
	Log *slog.Logger
	// MaxPayload bounds a device's publish payload in bytes; 0:
	// DefaultMaxPayload.
	MaxPayload int
	// MaxClients bounds the connected devices; 0: DefaultMaxClients. A
	// CONNECT beyond it is refused (server unavailable), a takeover of a
	// connected thing included.
	MaxClients int
	// ConnectTimeout bounds the time from accept to a complete CONNECT
	// (TLS handshake included); 0: DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// AuthTimeout bounds one Authenticator call; 0: DefaultAuthTimeout.
	AuthTimeout time.Duration
	// SessionExpiry bounds how long a persistent session (clean session
	// false) outlives its connection; 0: DefaultSessionExpiry.
	SessionExpiry time.Duration
	// OnPresence, when set, is told when a thing comes online and when it
	// goes offline (clean disconnect, dropped connection, broker
	// shutdown). A takeover by a new connection of the same thing reports
	// online again and no offline. Calls are serialised and ordered; they
	// must not block for long.
	OnPresence func(thing string, online bool, at time.Time)
	// Now is the clock of presence times; nil: time.Now.
	Now func() time.Time
}

// Stats counts what the broker refused since it started.
type Stats struct {
	RefusedConnects   int64 // CONNECTs refused by authentication or policy
	RefusedPublishes  int64 // publishes outside the device's own topics
	RefusedSubscribes int64 // subscriptions (and deliveries) outside them
	OversizedPayloads int64 // publishes over MaxPayload (connection closed)
}

// Broker is a running embedded MQTT broker. Start returns it; Close stops it.
type Broker struct {
	cfg       Config
	log       *slog.Logger
	srv       *mqtt.Server
	plain     *listener
	tls       *listener
	presence  presence
	subID     atomic.Int64
	closeOnce sync.Once
	closed    atomic.Bool

	refusedConnects, refusedPublishes, refusedSubscribes, oversized atomic.Int64
}

// Start binds the configured listeners (ctx bounds only the binding) and
// serves until Close. It returns an error when the configuration is
// invalid or a listener cannot be bound.
func Start(ctx context.Context, cfg Config) (*Broker, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	b := &Broker{cfg: cfg, log: cfg.Log}
	b.presence = presence{current: map[string]*deviceConn{}, announced: map[string]bool{}, notify: cfg.OnPresence, now: cfg.Now}

	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumClients = int64(cfg.MaxClients)
	caps.MaximumPacketSize = uint32(cfg.MaxPayload + packetOverhead)
	// Retained messages are refused by the hook (OnPublish, wills), not by
	// RetainAvailable = 0: mochi would answer a retained will with a
	// CONNACK code that MQTT 3.1.1 clients take for success.
	caps.TopicAliasMaximum = 0
	caps.MaximumSessionExpiryInterval = uint32(cfg.SessionExpiry / time.Second)
	// Shadow traffic is a few messages per device; mochi's defaults
	// (8192 pending writes, allocated per client) are sized for brokers
	// with heavy fan-out.
	caps.MaximumClientWritesPending = 256
	caps.MaximumInflight = 256
	caps.ReceiveMaximum = 64
	b.srv = mqtt.New(&mqtt.Options{
		Capabilities:           caps,
		InlineClient:           true,
		Logger:                 cfg.Log.With("component", "mqtt"),
		SysTopicResendInterval: 3600, // nobody may read $SYS; publish it rarely
	})
	if err := b.srv.AddHook(&hook{b: b}, nil); err != nil {
		return nil, fmt.Errorf("broker: add hook: %w", err)
	}

	if cfg.Addr != "" {
		if b.plain, err = listen(ctx, listenerPlain, cfg.Addr, nil, cfg.ConnectTimeout, &b.presence); err != nil {
			return nil, err
		}
	}
	if cfg.TLSAddr != "" {
		if b.tls, err = listen(ctx, listenerTLS, cfg.TLSAddr, cfg.TLS, cfg.ConnectTimeout, &b.presence); err != nil {
			b.plain.abort()
			return nil, err
		}
	}
	for _, l := range []*listener{b.plain, b.tls} {
		if l == nil {
			continue
		}
		if err := b.srv.AddListener(l); err != nil {
			b.plain.abort()
			b.tls.abort()
			return nil, fmt.Errorf("broker: add listener %s: %w", l.id, err)
		}
	}
	if err := b.srv.Serve(); err != nil {
		_ = b.srv.Close()
		return nil, fmt.Errorf("broker: serve: %w", err)
	}
	return b, nil
}

func (cfg Config) withDefaults() (Config, error) {
	if cfg.Auth == nil {
		return cfg, errors.New("broker: config: Auth is required")
	}
	if cfg.Addr == "" && cfg.TLSAddr == "" {
		return cfg, errors.New("broker: config: neither Addr nor TLSAddr is set")
	}
	if cfg.TLSAddr != "" {
		if cfg.TLS == nil {
			return cfg, errors.New("broker: config: TLSAddr needs TLS")
		}
		if cfg.TLS.ClientAuth != tls.RequireAndVerifyClientCert || cfg.TLS.ClientCAs == nil {
			return cfg, errors.New("broker: config: TLS must require and verify client certificates (ClientAuth RequireAndVerifyClientCert, ClientCAs)")
		}
	}
	if cfg.MaxPayload < 0 || cfg.MaxClients < 0 {
		return cfg, errors.New("broker: config: MaxPayload and MaxClients must not be negative")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxPayload == 0 {
		cfg.MaxPayload = DefaultMaxPayload
	}
	if cfg.MaxClients == 0 {
		cfg.MaxClients = DefaultMaxClients
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.AuthTimeout <= 0 {
		cfg.AuthTimeout = DefaultAuthTimeout
	}
	if cfg.SessionExpiry <= 0 {
		cfg.SessionExpiry = DefaultSessionExpiry
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg, nil
}

// Addr returns the bound address of the plain listener, or "" without one.
func (b *Broker) Addr() string { return b.plain.Address() }

// TLSAddr returns the bound address of the TLS listener, or "" without one.
func (b *Broker) TLSAddr() string { return b.tls.Address() }

// Stats returns what the broker refused so far.
func (b *Broker) Stats() Stats {
	return Stats{
		RefusedConnects:   b.refusedConnects.Load(),
		RefusedPublishes:  b.refusedPublishes.Load(),
		RefusedSubscribes: b.refusedSubscribes.Load(),
		OversizedPayloads: b.oversized.Load(),
	}
}

// Close disconnects every device, stops the listeners and returns once
// every connection has ended and its presence has been reported. It is
// idempotent and returns no error.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		_ = b.srv.Close() // closes our listeners, which close their connections
		b.plain.wait()
		b.tls.wait()
	})
	return nil
}

// Subscribe calls fn with every device publication whose topic matches
// filter (MQTT wildcards allowed), with the thing the publishing
// connection authenticated as: a consumer must trust that, not the topic.
// fn runs on the publishing device's connection, so one device's messages
// arrive in order; it owns payload. While fn runs, that device's later
// messages wait (the gateway's store write paces its device); other
// devices are not held up, but fn must still end (bound its I/O). Messages
// the node itself publishes are not passed to fn. It returns an error for
// an invalid filter.
func (b *Broker) Subscribe(filter string, fn func(thing, topic string, payload []byte)) error {
	id := int(b.subID.Add(1))
	err := b.srv.Subscribe(filter, id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		if pk.Origin == "" || pk.Origin == mqtt.InlineClientId {
			return
		}
		thing, ok := b.thingOf(pk.Origin)
		if !ok {
			// A delayed will of a session that has expired since: nobody
			// vouches for it any more.
			b.log.Debug("mqtt: dropped a message without a connected sender", "topic", pk.TopicName)
			return
		}
		fn(thing, pk.TopicName, slices.Clone(pk.Payload))
	})
	if err != nil {
		return fmt.Errorf("broker: subscribe %q: %w", filter, err)
	}
	return nil
}

// Publish sends payload on topic to the devices subscribed to it, at most
// at qos (0 or 1). It returns an error for an invalid topic, a qos above
// 1, a payload over MaxPayload, or ErrClosed.
func (b *Broker) Publish(topic string, payload []byte, qos byte) error {
	if b.closed.Load() {
		return fmt.Errorf("broker: publish %q: %w", topic, ErrClosed)
	}
	if qos > 1 {
		return fmt.Errorf("broker: publish %q: qos %d not supported", topic, qos)
	}
	if len(payload) > b.cfg.MaxPayload {
		return fmt.Errorf("broker: publish %q: payload of %d bytes over the maximum of %d", topic, len(payload), b.cfg.MaxPayload)
	}
	if topic == "" || !mqtt.IsValidFilter(topic, true) {
		return fmt.Errorf("broker: publish %q: invalid topic", topic)
	}
	if err := b.srv.Publish(topic, payload, false, qos); err != nil {
		return fmt.Errorf("broker: publish %q: %w", topic, err)
	}
	return nil
}

// ErrRevoked is the cause a connection is closed with by Disconnect.
var ErrRevoked = errors.New("broker: the thing's credentials were revoked")

// Disconnect closes the connection of thing, if it is connected here (its
// client id is the thing name), and reports whether it was. A revoked
// device must not keep a session its credentials no longer allow.
func (b *Broker) Disconnect(thing string) bool {
	cl, ok := b.srv.Clients.Get(thing)
	if !ok || cl.Closed() {
		return false
	}
	cl.Stop(ErrRevoked)
	return true
}

// thingOf returns the thing that the client with id authenticated as.
func (b *Broker) thingOf(id string) (string, bool) {
	cl, ok := b.srv.Clients.Get(id)
	if !ok {
		return "", false
	}
	dc, ok := cl.Net.Conn.(*deviceConn)
	if !ok || dc.thing == "" {
		return "", false
	}
	return dc.thing, true
}
