package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/spkey-dev/spkey/internal/domain/shadow"
)

// ErrDenied is what an Authenticator returns for credentials it refuses
// (unknown thing, wrong password, unknown or revoked certificate).
var ErrDenied = errors.New("device credentials denied")

// Authenticator decides which thing a connecting device is. Any error
// refuses the CONNECT: ErrDenied for refused credentials, another error
// when the decision could not be made (it is logged as an error).
type Authenticator interface {
	// Password authenticates a device on the plain listener.
	Password(ctx context.Context, username string, password []byte) (thing string, err error)
	// Certificate authenticates a device on the TLS listener by its leaf
	// client certificate, already verified against the listener's
	// ClientCAs; revocation is the Authenticator's to check.
	Certificate(ctx context.Context, leaf *x509.Certificate) (thing string, err error)
}

// topicPrefix is the part of the topic space a thing owns.
func topicPrefix(thing string) string { return "$aws/things/" + thing + "/" }

// allowed reports whether a topic (publish) or filter (subscribe) stays
// inside the thing's own topics. Thing names hold no '/', '+' or '#'
// (validThing), so the prefix is literal: wildcards may only follow it,
// and a shared subscription ($share/...) never matches it.
func allowed(thing, topic string) bool {
	p := topicPrefix(thing)
	return len(topic) > len(p) && strings.HasPrefix(topic, p)
}

// validThing reports whether name is an AWS IoT thing name
// ([a-zA-Z0-9:_-]{1,128}) and not the id of mochi's inline client, which
// a device would otherwise take over.
func validThing(name string) bool {
	return shadow.ValidThingName(name) && name != mqtt.InlineClientId
}

// hook is the broker's policy, plugged into mochi.
type hook struct {
	mqtt.HookBase
	b *Broker
}

// ID implements mqtt.Hook.
func (h *hook) ID() string { return "spkey-devices" }

// Provides implements mqtt.Hook.
func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnConnectAuthenticate,
		mqtt.OnACLCheck,
		mqtt.OnSessionEstablish,
		mqtt.OnSessionEstablished,
		mqtt.OnDisconnect,
		mqtt.OnPacketRead,
		mqtt.OnPublish,
	}, []byte{b})
}

// OnConnectAuthenticate implements mqtt.Hook: it asks the Authenticator
// for the connection's thing and checks the client id and the will
// against it; the thing is stored on the connection for its whole life.
func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	dc, ok := cl.Net.Conn.(*deviceConn)
	if !ok {
		return false
	}
	log := h.b.log.With("remote", cl.Net.Remote, "listener", dc.listener)
	thing, err := h.authenticate(dc, pk)
	switch {
	case errors.Is(err, ErrDenied):
		h.b.refusedConnects.Add(1)
		log.Info("mqtt: connect refused: credentials denied", "err", err)
		return false
	case err != nil:
		h.b.refusedConnects.Add(1)
		log.Error("mqtt: connect refused: authentication failed", "err", err)
		return false
	case !validThing(thing):
		h.b.refusedConnects.Add(1)
		log.Error("mqtt: connect refused: authenticator returned an invalid thing name", "thing", thing)
		return false
	}
	log = log.With("thing", thing)
	switch id := pk.Connect.ClientIdentifier; {
	case id == "":
		cl.ID = thing
		cl.Properties.Props.AssignedClientID = thing
	case id != thing:
		h.b.refusedConnects.Add(1)
		log.Info("mqtt: connect refused: client id is not the thing name", "client_id", id)
		return false
	}
	if w := cl.Properties.Will; w.Flag != 0 && (w.Retain || !allowed(thing, w.TopicName)) {
		h.b.refusedConnects.Add(1)
		log.Info("mqtt: connect refused: will retained or outside the thing's topics", "topic", w.TopicName, "retain", w.Retain)
		return false
	}
	dc.thing = thing
	return true
}

func (h *hook) authenticate(dc *deviceConn, pk packets.Packet) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), h.b.cfg.AuthTimeout)
	defer cancel()
	if dc.listener == listenerTLS {
		tc, ok := dc.Conn.(*tls.Conn)
		if !ok {
			return "", errors.New("tls listener without a tls connection")
		}
		certs := tc.ConnectionState().PeerCertificates
		if len(certs) == 0 {
			return "", ErrDenied
		}
		return h.b.cfg.Auth.Certificate(ctx, certs[0])
	}
	if !pk.Connect.UsernameFlag || !pk.Connect.PasswordFlag {
		return "", ErrDenied
	}
	return h.b.cfg.Auth.Password(ctx, string(pk.Connect.Username), pk.Connect.Password)
}

// OnACLCheck implements mqtt.Hook: a device publishes and subscribes only
// under its own thing's prefix; mochi also asks before each delivery.
// Refusals are logged and counted.
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	thing := thingOf(cl)
	if thing != "" && allowed(thing, topic) {
		return true
	}
	if write {
		h.b.refusedPublishes.Add(1)
		h.b.log.Warn("mqtt: publish refused: outside the thing's topics", "thing", thing, "topic", topic)
	} else {
		h.b.refusedSubscribes.Add(1)
		h.b.log.Warn("mqtt: subscribe refused: outside the thing's topics", "thing", thing, "topic", topic)
	}
	return false
}

// thingOf is the thing cl's connection authenticated as ("" before
// CONNECT is accepted, and for the node's own inline client).
func thingOf(cl *mqtt.Client) string {
	if dc, ok := cl.Net.Conn.(*deviceConn); ok {
		return dc.thing
	}
	return ""
}

// OnPacketRead implements mqtt.Hook: a publish over MaxPayload is refused
// and its connection closed (MQTT 3.1.1 has no way to refuse one publish).
func (h *hook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Publish || len(pk.Payload) <= h.b.cfg.MaxPayload {
		return pk, nil
	}
	h.b.oversized.Add(1)
	h.b.log.Warn("mqtt: publish refused: payload too large", "thing", thingOf(cl), "topic", pk.TopicName, "bytes", len(pk.Payload), "max", h.b.cfg.MaxPayload)
	return pk, packets.ErrRejectPacket
}

// OnPublish implements mqtt.Hook: a device's retained publish is
// delivered as an ordinary one and never stored.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if !cl.Net.Inline {
		pk.FixedHeader.Retain = false
	}
	return pk, nil
}

// OnSessionEstablish implements mqtt.Hook: the connection becomes its
// thing's current one before mochi disconnects any it takes over.
func (h *hook) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	if dc, ok := cl.Net.Conn.(*deviceConn); ok {
		h.b.presence.claim(dc)
	}
}

// OnSessionEstablished implements mqtt.Hook: the thing is online.
func (h *hook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if dc, ok := cl.Net.Conn.(*deviceConn); ok {
		h.b.presence.up(dc)
	}
}

// OnDisconnect implements mqtt.Hook: the thing is offline, unless this
// connection was taken over.
func (h *hook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	if dc, ok := cl.Net.Conn.(*deviceConn); ok {
		h.b.presence.down(dc)
	}
}
