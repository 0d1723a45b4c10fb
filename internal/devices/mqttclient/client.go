// Package mqttclient is the devices.Transport of an external MQTT broker
// (Mosquitto 2, EMQX): spkey joins the broker as one more client, with
// github.com/eclipse/paho.mqtt.golang (MQTT 3.1.1), instead of running the
// embedded broker (internal/devices/broker).
//
// # Who published
//
// A client of an external broker cannot see who published a message: the
// thing passed to the subscriber is the one named in the topic
// ($aws/things/{thing}/...). The gateway's check "a request on another
// thing's topic is refused" therefore holds only if the broker enforces
// it: the broker must let each device read and write its own thing's
// topics only. With Mosquitto, devices log in with their thing name as
// client id and the ACL file says
//
//	pattern readwrite $aws/things/%c/#
//
// (plus a user for spkey with `topic readwrite $aws/things/#`). Without
// such an ACL any device can write any other device's shadow.
//
// # Several nodes
//
// Subscribe subscribes to the shared subscription $share/GROUP/FILTER
// (Config.ShareGroup, "spkey" by default): the broker hands each message
// to one member of the group, so several spkey nodes split the devices'
// requests and each request is handled once. Shared subscriptions spread
// messages per message, not per device: two requests of one device that
// follow each other closely may be handled by two nodes at once, and then
// answered in either order (the store's versions still keep the shadow
// consistent). A broker that can keep a publisher on one member (EMQX's
// shared_subscription_strategy = hash_clientid) keeps one device's
// requests in order across nodes too.
//
// Mosquitto 2.0 accepts $share but never delivers a topic that starts
// with '$' to a shared subscription (it files every shared subscription
// under the non-$ root), and the shadow topics start with $aws. On such a
// broker set Config.NoShare: spkey then makes a plain subscription, and
// only ONE spkey node may be connected to the broker (each connected node
// would handle every request). EMQX and other brokers that share $
// topics can run several nodes.
//
// # Order and slow handlers
//
// Within one node, messages are handed to a fixed pool of workers
// (Config.Workers), each with a bounded queue (Config.QueueSize); a thing
// always goes to the same worker, so one device's messages are handled
// one after the other, in the order the broker delivered them. A slow
// handler holds up only the things of its worker (the gateway bounds
// every request by its RequestTimeout); paho's delivery goroutine never
// waits for a handler. When a worker's queue is full, the message is
// dropped, counted (Stats.Dropped) and logged (at the 1st, 2nd, 4th...
// drop): the device gets no answer
// and retries, as it does after any lost answer. Memory stays bounded.
//
// # Answers come back
//
// MQTT 3.1.1 has no "no local": the answers spkey publishes on
// .../accepted, /rejected, /delta and /documents match the gateway's
// filter and come back to the group. They are passed to the subscriber
// like any message; the gateway ignores them (shadow.ParseTopic accepts
// request topics only, Stats.Ignored counts them).
//
// # Connection
//
// Dial connects once and fails when the broker cannot be reached within
// Config.ConnectTimeout (a wrong URL, host or password shows at start).
// Later losses are repaired by paho's auto-reconnect; every subscription
// is made again on each connect (clean sessions: a node that is away
// misses the messages of its absence, which the broker gives the other
// members of the group; with NoShare, they are lost: the devices ask
// again). Publish fails at once while the connection is down and waits
// at most Config.PublishTimeout for the broker's PUBACK; as the workers
// publish their answers one at a time, at most Config.Workers
// publications wait at once (one that timed out stays with paho, which
// sends it again after a reconnect, DefaultMaxPublishInFlight at most).
// Close disconnects, drops the messages still queued and waits for the
// handlers running (the gateway bounds each by its RequestTimeout).
package mqttclient

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Defaults of Config's zero fields.
const (
	DefaultShareGroup        = "spkey"
	DefaultConnectTimeout    = 10 * time.Second
	DefaultPublishTimeout    = 5 * time.Second
	DefaultMaxReconnectDelay = 10 * time.Second
	DefaultKeepAlive         = 30 * time.Second
	DefaultWorkers           = 8
	DefaultQueueSize         = 64
	// DefaultMaxPublishInFlight bounds the QoS 1 publications waiting for
	// their PUBACK (paho resends them after a reconnect).
	DefaultMaxPublishInFlight = 256
)

// subscribeQoS is the QoS of spkey's subscriptions.
const subscribeQoS = 1

// ErrNotConnected is Publish's error while the connection to the broker
// is down.
var ErrNotConnected = errors.New("mqttclient: not connected to the broker")

// ErrClosed is the error of Subscribe and Publish after Close.
var ErrClosed = errors.New("mqttclient: closed")

// Config is the connection to an external broker.
type Config struct {
	// URL is the broker: mqtt://host:port or mqtts://host:port (TLS), with
	// optional user:password (e.g. mqtt://spkey:secret@broker:1883). The
	// port defaults to 1883 (mqtt) or 8883 (mqtts).
	URL string
	// ClientID is spkey's client id; "": "spkey-" and a random suffix.
	ClientID string
	// ShareGroup is the shared-subscription group of the spkey nodes;
	// "": DefaultShareGroup. It must not contain '/', '+' or '#'.
	ShareGroup string
	// NoShare subscribes without a share group, for brokers that do not
	// share $ topics (Mosquitto 2.0): then only one spkey node may be
	// connected to the broker (see the package doc).
	NoShare bool
	// CAFile is a PEM file of CA certificates trusted for mqtts, besides
	// the system's roots; "": the system's roots only.
	CAFile string
	// ConnectTimeout bounds Dial's connection; 0: DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// PublishTimeout bounds the wait for a publication's PUBACK (and a
	// subscription's SUBACK); 0: DefaultPublishTimeout.
	PublishTimeout time.Duration
	// MaxReconnectDelay is the longest pause between reconnection
	// attempts (they back off from 1s); 0: DefaultMaxReconnectDelay.
	MaxReconnectDelay time.Duration
	// KeepAlive is the MQTT keep-alive; 0: DefaultKeepAlive.
	KeepAlive time.Duration
	// Workers is the number of handler goroutines; 0: DefaultWorkers.
	Workers int
	// QueueSize bounds each worker's waiting messages; 0: DefaultQueueSize.
	QueueSize int
	// Log receives the connection's records; nil: discarded. The URL's
	// password is never logged.
	Log *slog.Logger
}

// Stats counts what the client did since Dial.
type Stats struct {
	Received   int64 // messages handed to a worker
	Dropped    int64 // messages dropped because their worker's queue was full
	Connects   int64 // successful connections, the first one included
	ConnLost   int64 // connections lost
	Subscribed int64 // subscriptions made (again after each connect)
}

// Client is a devices.Transport over an external broker. Dial makes one;
// its methods are safe for concurrent use.
type Client struct {
	cfg    Config
	log    *slog.Logger
	c      paho.Client
	queues []chan delivery
	done   chan struct{} // closed by Close: the workers stop
	ready  chan struct{} // closed when the first connection's onConnect ended
	once   sync.Once
	wg     sync.WaitGroup

	mu     sync.RWMutex // guards subs and closed
	subs   []subscription
	closed bool

	received, dropped, connects, connLost, subscribed atomic.Int64
}

type subscription struct {
	shared string // $share/GROUP/filter, or filter with NoShare
	fn     func(thing, topic string, payload []byte)
}

type delivery struct {
	fn           func(thing, topic string, payload []byte)
	thing, topic string
	payload      []byte
}

// Dial checks cfg, connects to the broker and starts the workers. It
// returns an error for a bad URL, group, CA file or setting, and when
// the broker cannot be reached or refuses spkey within ConnectTimeout;
// nothing is left running then.
func Dial(cfg Config) (*Client, error) {
	cfg, opts, err := cfg.options()
	if err != nil {
		return nil, err
	}
	cl := &Client{cfg: cfg, log: cfg.Log, done: make(chan struct{}), ready: make(chan struct{})}
	cl.queues = make([]chan delivery, cfg.Workers)
	for i := range cl.queues {
		cl.queues[i] = make(chan delivery, cfg.QueueSize)
	}
	opts.SetOnConnectHandler(cl.onConnect).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			cl.connLost.Add(1)
			cl.log.Warn("mqtt: connection to the broker lost, reconnecting", "err", err)
		}).
		SetReconnectingHandler(func(paho.Client, *paho.ClientOptions) {
			cl.log.Debug("mqtt: reconnecting to the broker")
		})
	cl.c = paho.NewClient(opts)
	tok := cl.c.Connect()
	if !tok.WaitTimeout(cfg.ConnectTimeout) {
		cl.c.Disconnect(0)
		return nil, fmt.Errorf("mqttclient: connect to %s: no answer within %v", Redacted(cfg.URL), cfg.ConnectTimeout)
	}
	if err := tok.Error(); err != nil {
		cl.c.Disconnect(0)
		return nil, fmt.Errorf("mqttclient: connect to %s: %w", Redacted(cfg.URL), err)
	}
	// paho runs onConnect on a goroutine of its own: wait for it, so that
	// a Subscribe after Dial is made once, by Subscribe.
	select {
	case <-cl.ready:
	case <-time.After(cfg.ConnectTimeout):
	}
	for _, q := range cl.queues {
		cl.wg.Add(1)
		go cl.work(q)
	}
	cl.log.Info("mqtt: connected to the broker", "url", Redacted(cfg.URL), "client_id", opts.ClientID, "share_group", cfg.ShareGroup, "no_share", cfg.NoShare)
	return cl, nil
}

// options fills cfg's defaults and builds paho's options.
func (cfg Config) options() (Config, *paho.ClientOptions, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.ShareGroup == "" {
		cfg.ShareGroup = DefaultShareGroup
	}
	if strings.ContainsAny(cfg.ShareGroup, "/+#") {
		return cfg, nil, fmt.Errorf("mqttclient: share group %q must not contain '/', '+' or '#'", cfg.ShareGroup)
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&cfg.ConnectTimeout, DefaultConnectTimeout}, {&cfg.PublishTimeout, DefaultPublishTimeout}, {&cfg.MaxReconnectDelay, DefaultMaxReconnectDelay}, {&cfg.KeepAlive, DefaultKeepAlive}} {
		if *d.v < 0 {
			return cfg, nil, errors.New("mqttclient: durations must not be negative")
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.Workers < 0 || cfg.QueueSize < 0 {
		return cfg, nil, errors.New("mqttclient: Workers and QueueSize must not be negative")
	}
	if cfg.Workers == 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.ClientID == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		cfg.ClientID = "spkey-" + hex.EncodeToString(b[:])
	}
	broker, user, pass, tlsOn, err := ParseURL(cfg.URL)
	if err != nil {
		return cfg, nil, err
	}
	opts := paho.NewClientOptions().
		AddBroker(broker).
		SetClientID(cfg.ClientID).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetResumeSubs(false).
		SetOrderMatters(true).
		SetAutoReconnect(true).
		SetConnectRetry(false).
		SetConnectTimeout(cfg.ConnectTimeout).
		SetWriteTimeout(cfg.PublishTimeout).
		SetMaxReconnectInterval(cfg.MaxReconnectDelay).
		SetKeepAlive(cfg.KeepAlive).
		SetPingTimeout(cfg.PublishTimeout).
		SetMaxResumePubInFlight(DefaultMaxPublishInFlight)
	if user != "" {
		opts.SetUsername(user)
		opts.SetPassword(pass)
	}
	if tlsOn {
		tc, err := tlsConfig(cfg.CAFile)
		if err != nil {
			return cfg, nil, err
		}
		opts.SetTLSConfig(tc)
	} else if cfg.CAFile != "" {
		return cfg, nil, errors.New("mqttclient: a CA file needs an mqtts:// URL")
	}
	return cfg, opts, nil
}

// ParseURL checks a broker URL (mqtt:// or mqtts://, host required, no
// path) and returns paho's broker address (tcp://host:port or
// ssl://host:port), the credentials and whether TLS is on. Its errors
// never contain the password.
func ParseURL(raw string) (broker, user, password string, tlsOn bool, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", "", false, fmt.Errorf("mqttclient: the broker URL is not a URL (want mqtt://[user:password@]host:port or mqtts://...)")
	}
	var scheme, port string
	switch u.Scheme {
	case "mqtt", "tcp":
		scheme, port = "tcp", "1883"
	case "mqtts", "ssl", "tls":
		scheme, port, tlsOn = "ssl", "8883", true
	default:
		return "", "", "", false, fmt.Errorf("mqttclient: broker URL scheme %q: want mqtt:// or mqtts://", u.Scheme)
	}
	if u.Hostname() == "" {
		return "", "", "", false, fmt.Errorf("mqttclient: the broker URL %s has no host", Redacted(raw))
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", "", "", false, fmt.Errorf("mqttclient: the broker URL %s must have no path, query or fragment", Redacted(raw))
	}
	if p := u.Port(); p != "" {
		port = p
	}
	host := u.Hostname()
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if u.User != nil {
		user = u.User.Username()
		password, _ = u.User.Password()
	}
	return scheme + "://" + host + ":" + port, user, password, tlsOn, nil
}

// redacted is raw without its password, for logs and errors.
func Redacted(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// tlsConfig trusts the system's roots and the certificates of caFile.
func tlsConfig(caFile string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return tc, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("mqttclient: CA file: %w", err)
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("mqttclient: CA file %s holds no PEM certificate", caFile)
	}
	tc.RootCAs = pool
	return tc, nil
}

// onConnect runs on every connection (paho calls it on its own
// goroutine): it makes every subscription again, the broker having
// forgotten them with the clean session.
func (cl *Client) onConnect(paho.Client) {
	defer cl.once.Do(func() { close(cl.ready) })
	cl.connects.Add(1)
	cl.mu.RLock()
	subs := append([]subscription(nil), cl.subs...)
	closed := cl.closed
	cl.mu.RUnlock()
	if closed {
		return
	}
	for _, s := range subs {
		if err := cl.subscribe(s); err != nil {
			// The connection is likely gone again: the next connect retries.
			cl.log.Error("mqtt: subscribe again after connect", "filter", s.shared, "err", err)
		}
	}
	if n := cl.connects.Load(); n > 1 {
		cl.log.Info("mqtt: reconnected to the broker", "connects", n, "subscriptions", len(subs))
	}
}

// Subscribe subscribes to filter in the client's share group
// ($share/GROUP/filter; filter itself with NoShare) at QoS 1 and calls fn with each matching message,
// the thing taken from the topic ($aws/things/{thing}/...; "" for another
// topic): see the package doc for why the broker's ACL must vouch for it.
// One thing's messages reach fn in order, on one worker. The subscription
// is made again after every reconnect. It returns an error for an empty
// filter, a refused subscription, no SUBACK within PublishTimeout, or
// ErrClosed.
func (cl *Client) Subscribe(filter string, fn func(thing, topic string, payload []byte)) error {
	if filter == "" || strings.HasPrefix(filter, "$share/") {
		return fmt.Errorf("mqttclient: subscribe: invalid filter %q", filter)
	}
	s := subscription{shared: "$share/" + cl.cfg.ShareGroup + "/" + filter, fn: fn}
	if cl.cfg.NoShare {
		s.shared = filter
	}
	cl.mu.Lock()
	if cl.closed {
		cl.mu.Unlock()
		return ErrClosed
	}
	cl.subs = append(cl.subs, s)
	cl.mu.Unlock()
	return cl.subscribe(s)
}

// subscribe sends one SUBSCRIBE and waits for its SUBACK.
func (cl *Client) subscribe(s subscription) error {
	tok := cl.c.Subscribe(s.shared, subscribeQoS, func(_ paho.Client, m paho.Message) {
		cl.dispatch(s.fn, m.Topic(), m.Payload())
	})
	if !tok.WaitTimeout(cl.cfg.PublishTimeout) {
		return fmt.Errorf("mqttclient: subscribe %q: no SUBACK within %v", s.shared, cl.cfg.PublishTimeout)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("mqttclient: subscribe %q: %w", s.shared, err)
	}
	if st, ok := tok.(*paho.SubscribeToken); ok {
		if code, found := st.Result()[s.shared]; found && code >= 0x80 {
			return fmt.Errorf("mqttclient: subscribe %q: refused by the broker (SUBACK %#x; check its ACL)", s.shared, code)
		}
	}
	cl.subscribed.Add(1)
	return nil
}

// dispatch queues a message on its thing's worker, or drops it when that
// queue is full. It never blocks: it runs on paho's delivery goroutine.
func (cl *Client) dispatch(fn func(thing, topic string, payload []byte), topic string, payload []byte) {
	thing := ThingOf(topic)
	q := cl.queues[WorkerOf(thing, len(cl.queues))]
	cl.mu.RLock()
	defer cl.mu.RUnlock()
	if cl.closed {
		return
	}
	select {
	case q <- delivery{fn: fn, thing: thing, topic: topic, payload: payload}:
		cl.received.Add(1)
	default:
		// Logged at the 1st, 2nd, 4th, 8th... drop: a flood stays readable.
		if n := cl.dropped.Add(1); n&(n-1) == 0 {
			cl.log.Warn("mqtt: handler queue full, message dropped", "thing", thing, "topic", topic, "dropped", n)
		}
	}
}

// work runs the handlers of one queue until Close closes it; once the
// client is closed, waiting messages are dropped (no request starts
// then).
func (cl *Client) work(q chan delivery) {
	defer cl.wg.Done()
	for {
		select {
		case <-cl.done:
			return
		case d := <-q:
			select {
			case <-cl.done:
				return
			default:
			}
			d.fn(d.thing, d.topic, d.payload)
		}
	}
}

// WorkerOf is the worker, out of n, that handles thing's messages.
func WorkerOf(thing string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(thing))
	return int(h.Sum32() % uint32(n))
}

// ThingOf is the thing of an $aws/things/{thing}/... topic, or "".
func ThingOf(topic string) string {
	rest, ok := strings.CutPrefix(topic, "$aws/things/")
	if !ok {
		return ""
	}
	thing, _, ok := strings.Cut(rest, "/")
	if !ok {
		return ""
	}
	return thing
}

// Publish sends payload on topic at qos (0 or 1) and, at QoS 1, waits for
// the PUBACK at most PublishTimeout. It fails at once with ErrNotConnected
// while the connection is down (a reconnect is under way), with ErrClosed
// after Close, and for a qos above 1 or an empty or wildcard topic.
func (cl *Client) Publish(topic string, payload []byte, qos byte) error {
	if qos > 1 {
		return fmt.Errorf("mqttclient: publish %q: qos %d not supported", topic, qos)
	}
	if topic == "" || strings.ContainsAny(topic, "+#") {
		return fmt.Errorf("mqttclient: publish %q: invalid topic", topic)
	}
	cl.mu.RLock()
	closed := cl.closed
	cl.mu.RUnlock()
	if closed {
		return fmt.Errorf("mqttclient: publish %q: %w", topic, ErrClosed)
	}
	if !cl.c.IsConnectionOpen() {
		return fmt.Errorf("mqttclient: publish %q: %w", topic, ErrNotConnected)
	}
	tok := cl.c.Publish(topic, qos, false, payload)
	if !tok.WaitTimeout(cl.cfg.PublishTimeout) {
		return fmt.Errorf("mqttclient: publish %q: no PUBACK within %v", topic, cl.cfg.PublishTimeout)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("mqttclient: publish %q: %w", topic, err)
	}
	return nil
}

// Connected reports whether the connection to the broker is up.
func (cl *Client) Connected() bool { return cl.c.IsConnectionOpen() }

// ClientID is the client id spkey connects with.
func (cl *Client) ClientID() string { return cl.cfg.ClientID }

// Stats returns the client's counters.
func (cl *Client) Stats() Stats {
	return Stats{
		Received:   cl.received.Load(),
		Dropped:    cl.dropped.Load(),
		Connects:   cl.connects.Load(),
		ConnLost:   cl.connLost.Load(),
		Subscribed: cl.subscribed.Load(),
	}
}

// Close disconnects from the broker (waiting at most 250ms for the work
// under way on the wire), drops the messages not yet handled and returns
// once the handlers running have returned. It is idempotent.
func (cl *Client) Close() error {
	cl.mu.Lock()
	if cl.closed {
		cl.mu.Unlock()
		return nil
	}
	cl.closed = true
	close(cl.done)
	cl.mu.Unlock()
	cl.c.Disconnect(250)
	cl.wg.Wait()
	cl.log.Info("mqtt: disconnected from the broker")
	return nil
}
