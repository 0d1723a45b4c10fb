package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/devices"
	"github.com/spkey-dev/spkey/internal/devices/broker"
	"github.com/spkey-dev/spkey/internal/devices/ca"
	"github.com/spkey-dev/spkey/internal/devices/creds"
	"github.com/spkey-dev/spkey/internal/devices/mqttclient"
	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/store"
)

// This file is the node's device layer: the device CA, the embedded MQTT
// broker (authenticated by the stored device credentials) and the shadow
// gateway on it. Node.Start starts it, Node.Stop closes it.

// DevicesConfig is a node's device layer. With both addresses empty the
// node runs no broker and no gateway.
type DevicesConfig struct {
	// MQTTAddr is the broker's plain listener, where devices log in with a
	// thing name and a password (e.g. 127.0.0.1:1884, or :0); "": off.
	MQTTAddr string
	// MQTTSAddr is the broker's TLS listener, where devices log in with a
	// client certificate of the device CA (e.g. 127.0.0.1:8884); "": off.
	MQTTSAddr string
	// CADir is the folder of the device CA (ca.LoadOrCreateDir: created
	// there on the first start); "": the CA is kept in the database
	// (LoadDeviceCA), which suits nodes sharing a PostgreSQL database.
	CADir string
	// TLSCertFile and TLSKeyFile, when set, are the broker's own TLS
	// certificate and key (PEM files) instead of one the device CA signs.
	TLSCertFile, TLSKeyFile string
	// Hosts are the names (DNS names or IP addresses) the broker's TLS
	// certificate is valid for, the first one its common name; nil:
	// DefaultDeviceHosts.
	Hosts []string
	// MQTTURL is an external broker (mqtt://[user:password@]host:port or
	// mqtts://...) the gateway joins as a client instead of running the
	// embedded broker (devices/mqttclient); "": off. It excludes MQTTAddr
	// and MQTTSAddr, and needs no CADir (the broker authenticates the
	// devices).
	MQTTURL string
	// MQTTClient is the rest of the external broker's settings (client
	// id, share group, CA file...); its URL and Log are MQTTURL and the
	// node's log.
	MQTTClient mqttclient.Config
}

// DefaultDeviceHosts returns the names of the broker's TLS certificate
// when DevicesConfig.Hosts is empty: localhost and 127.0.0.1.
func DefaultDeviceHosts() []string { return []string{"localhost", "127.0.0.1"} }

// brokerCertValidity is how long the broker's TLS certificate is valid;
// a new one is made at every start.
const brokerCertValidity = 397 * 24 * time.Hour

// On reports whether d asks for a broker (at least one listener, or an
// external broker).
func (d DevicesConfig) On() bool { return d.MQTTAddr != "" || d.MQTTSAddr != "" || d.MQTTURL != "" }

// deviceLayer is what startDevices started: the embedded broker or the
// external broker's client, and the gateway on it.
type deviceLayer struct {
	broker  *broker.Broker
	client  *mqttclient.Client
	gateway *devices.Gateway
	// presence records the devices' presence (store rows, lock events).
	presence *app.PresenceRecorder
	// access is what the credential routes need (app.DeviceAccess).
	access *app.DeviceAccess
}

// startExternal connects the gateway to the external broker
// cfg.Devices.MQTTURL. It returns an error when a listener is configured
// too, and the client's (a bad URL, a broker that cannot be reached or
// refuses spkey) and the gateway's, wrapped.
func startExternal(ctx context.Context, cfg Config, g *devices.Gateway, svc *app.Service, log *slog.Logger) (*deviceLayer, error) {
	d := cfg.Devices
	if d.MQTTAddr != "" || d.MQTTSAddr != "" {
		return nil, errors.New("devices: an external broker (MQTTURL) excludes the embedded broker's listeners (MQTTAddr, MQTTSAddr)")
	}
	ccfg := d.MQTTClient
	ccfg.URL, ccfg.Log = d.MQTTURL, log.With("component", "mqtt-client")
	c, err := mqttclient.Dial(ccfg)
	if err != nil {
		return nil, fmt.Errorf("devices: %w", err)
	}
	// No node holds a connection to an external broker: the devices'
	// presence messages (and their wills) say who is online.
	rec := app.NewPresenceRecorder(svc, "", 0, log.With("component", "presence"))
	if err := rec.Start(ctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("devices: %w", err)
	}
	// Only the recorded presence (the store) counts, not the gateway's
	// own view (g.SetOnline): the share group hands each presence message
	// to one node, so a node that got a device's {"online":true} may never
	// see its {"online":false} (another node got it) and would answer
	// "online" for good. Commands read the store's row (app.deviceOnline).
	err = devices.WatchPresence(c, nil, func(thing string, online bool, at time.Time) {
		rec.Seen(thing, online, at)
	}, log.With("component", "presence"))
	if err == nil {
		err = g.Start(c)
	}
	if err != nil {
		_ = c.Close()
		rec.Close()
		return nil, err
	}
	return &deviceLayer{client: c, gateway: g, presence: rec}, nil
}

// startDevices loads or creates the device CA in cfg.Devices.CADir,
// starts the broker on the configured listeners (passwords on MQTTAddr,
// client certificates on MQTTSAddr, both checked against cfg.Store) and
// the gateway g on it. Without a listener it returns nil and no error. It
// returns an error when CADir is empty, the CA's errors
// (ca.LoadOrCreateDir, ca.ServerCert), the broker's (a listener that
// cannot be bound) and the gateway's, each wrapped; nothing is left
// running then.
func startDevices(ctx context.Context, cfg Config, g *devices.Gateway, svc *app.Service, log *slog.Logger) (*deviceLayer, error) {
	d := cfg.Devices
	if !d.On() {
		return nil, nil
	}
	if d.MQTTURL != "" {
		return startExternal(ctx, cfg, g, svc, log)
	}
	now := time.Now()
	authority, err := LoadDeviceCA(ctx, cfg.Store, d.CADir, now)
	if err != nil {
		return nil, err
	}
	// The embedded broker's presence is authoritative: the devices'
	// presence messages are not watched here (devices.WatchPresence).
	rec := app.NewPresenceRecorder(svc, presenceNode(d), 0, log.With("component", "presence"))
	if err := rec.Start(ctx); err != nil {
		return nil, fmt.Errorf("devices: %w", err)
	}
	bcfg := broker.Config{
		Addr:    d.MQTTAddr,
		TLSAddr: d.MQTTSAddr,
		Auth:    creds.NewAuthenticator(cfg.Store, log.With("component", "device-auth")),
		Log:     log.With("component", "broker"),
		OnPresence: func(thing string, online bool, at time.Time) {
			g.SetOnline(thing, online)
			rec.Seen(thing, online, at)
		},
	}
	if d.MQTTSAddr != "" {
		hosts := d.Hosts
		if len(hosts) == 0 {
			hosts = DefaultDeviceHosts()
		}
		var cert tls.Certificate
		if d.TLSCertFile != "" || d.TLSKeyFile != "" {
			// The operator's certificate (e.g. from a public CA); devices
			// still log in with client certificates of the device CA.
			cert, err = tls.LoadX509KeyPair(d.TLSCertFile, d.TLSKeyFile)
		} else {
			cert, err = authority.ServerCert(hosts, now, brokerCertValidity)
		}
		if err != nil {
			rec.Close()
			return nil, fmt.Errorf("devices: the broker's TLS certificate: %w", err)
		}
		bcfg.TLS = authority.ServerTLS(cert)
	}
	b, err := broker.Start(ctx, bcfg)
	if err != nil {
		rec.Close()
		return nil, fmt.Errorf("devices: %w", err)
	}
	if err := g.Start(b); err != nil {
		_ = b.Close()
		rec.Close()
		return nil, err
	}
	log.Info("device broker listening", "mqtt", b.Addr(), "mqtts", b.TLSAddr())
	caPEM, _, err := authority.PEM()
	if err != nil {
		_ = b.Close()
		rec.Close()
		return nil, fmt.Errorf("devices: %w", err)
	}
	hosts := d.Hosts
	if len(hosts) == 0 {
		hosts = DefaultDeviceHosts()
	}
	access := &app.DeviceAccess{Issuer: creds.NewIssuer(cfg.Store, authority), CACertPEM: caPEM,
		MQTTEndpoint: endpoint(b.Addr(), hosts[0]), MQTTSEndpoint: endpoint(b.TLSAddr(), hosts[0]), Disconnect: b.Disconnect}
	return &deviceLayer{broker: b, gateway: g, presence: rec, access: access}, nil
}

// presenceNode names this node as the holder of its broker's
// connections: the host name and the configured listener addresses, the
// same across the node's restarts. A listener on port 0 gets another port
// at every start, so the name then ends with a random part: two such
// nodes on one host must not take each other's rows, and a restart cannot
// reset the rows of the previous run (they stay until the devices
// reconnect).
func presenceNode(d DevicesConfig) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	name := host + " " + d.MQTTAddr + " " + d.MQTTSAddr
	for _, a := range []string{d.MQTTAddr, d.MQTTSAddr} {
		if _, port, err := net.SplitHostPort(a); err == nil && (port == "0" || port == "") {
			return name + " " + app.NewUUID()
		}
	}
	return name
}

// endpoint is a bound listener address as devices should dial it: a
// wildcard host (0.0.0.0, ::) becomes host, the broker's first TLS name.
// "" stays "" (listener off).
func endpoint(bound, host string) string {
	h, port, err := net.SplitHostPort(bound)
	if err != nil {
		return bound
	}
	if ip := net.ParseIP(h); h == "" || (ip != nil && ip.IsUnspecified()) {
		return net.JoinHostPort(host, port)
	}
	return bound
}

// deviceAccess is the layer as the app's credential routes use it; nil
// without a layer.
func (l *deviceLayer) deviceAccess() *app.DeviceAccess {
	if l == nil {
		return nil
	}
	return l.access
}

// close disconnects every device and stops the broker (and so the
// gateway, which receives nothing more).
func (l *deviceLayer) close() {
	if l == nil {
		return
	}
	if l.broker != nil {
		_ = l.broker.Close()
	}
	if l.client != nil {
		_ = l.client.Close()
	}
	// After the broker: its closing reported every device offline.
	if l.presence != nil {
		l.presence.Close()
	}
}

// MQTTAddr returns the bound address (host:port) of the broker's plain
// listener, or "" when it is off or the node is not started.
func (n *Node) MQTTAddr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.devices == nil || n.devices.broker == nil {
		return ""
	}
	return n.devices.broker.Addr()
}

// MQTTSAddr returns the bound address (host:port) of the broker's TLS
// listener, or "" when it is off or the node is not started.
func (n *Node) MQTTSAddr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.devices == nil || n.devices.broker == nil {
		return ""
	}
	return n.devices.broker.TLSAddr()
}

// Gateway returns the node's shadow gateway, or nil when the node has no
// broker or is not started.
func (n *Node) Gateway() *devices.Gateway {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.devices == nil {
		return nil
	}
	return n.devices.gateway
}

// LoadDeviceCA returns the device CA: from folder dir (created there on
// first use, ca.LoadOrCreateDir), or, with dir empty, from the database
// (created by the first node to ask; every other node reads that one).
func LoadDeviceCA(ctx context.Context, st *store.Store, dir string, now time.Time) (*ca.CA, error) {
	if dir != "" {
		a, err := ca.LoadOrCreateDir(dir, now)
		if err != nil {
			return nil, fmt.Errorf("devices: %w", err)
		}
		return a, nil
	}
	certPEM, keyPEM, found, err := st.DeviceCA(ctx)
	if err != nil {
		return nil, fmt.Errorf("devices: %w", err)
	}
	if !found {
		fresh, err := ca.New(now, ca.DefaultName)
		if err != nil {
			return nil, fmt.Errorf("devices: %w", err)
		}
		c, k, err := fresh.PEM()
		if err != nil {
			return nil, fmt.Errorf("devices: %w", err)
		}
		if err := st.PutDeviceCAIfAbsent(ctx, c, k, now.UTC().Format(domain.TimeLayout)); err != nil {
			return nil, fmt.Errorf("devices: %w", err)
		}
		if certPEM, keyPEM, found, err = st.DeviceCA(ctx); err != nil || !found {
			return nil, fmt.Errorf("devices: the device CA was stored but cannot be read back: %v", err)
		}
	}
	a, err := ca.Parse(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("devices: the database's device CA: %w", err)
	}
	return a, nil
}
