// Package devices is spkey's gateway to its devices: it answers the AWS IoT
// shadow requests devices publish over MQTT (update, get, delete of a
// thing's classic or named shadows) from the shadows kept in the store, and
// it applies server-side desired-state changes inside a command's
// transaction (UpdateDesired).
//
// Every request is handled in one store.Write: the shadow is read inside
// the transaction, the shadow package decides, the new document is written
// with the version read as the expected one, and the answers are published
// only after the commit returned. The thing a request is for comes from the
// connection's identity, as the Transport reports it: a request on another
// thing's topic is refused.
package devices

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/shadow"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/store"
)

// Transport is the MQTT side the gateway needs: the embedded broker
// (internal/devices/broker) satisfies it, an external broker's client will.
type Transport interface {
	// Subscribe calls fn with every device publication matching filter,
	// with the thing the publishing connection authenticated as; one
	// device's messages arrive in order.
	Subscribe(filter string, fn func(thing, topic string, payload []byte)) error
	// Publish sends payload on topic at most at qos.
	Publish(topic string, payload []byte, qos byte) error
}

// RequestFilter is the topic filter the gateway subscribes to: every
// shadow topic of every thing.
const RequestFilter = "$aws/things/+/shadow/#"

// Defaults of Config's zero fields.
const (
	DefaultRequestTimeout = 10 * time.Second
	DefaultMaxAttempts    = 3
)

// answerQoS is the QoS of every answer the gateway publishes.
const answerQoS = 1

// Config tunes a Gateway; the zero Config is AWS's limits, time.Now and the
// defaults above.
type Config struct {
	// Limits bounds the shadow requests (shadow.Limits; zero fields take
	// AWS's values).
	Limits shadow.Limits
	// Now is the clock of shadow timestamps; nil: time.Now.
	Now func() time.Time
	// RequestTimeout bounds the handling of one device request (its store
	// transaction and retries); 0: DefaultRequestTimeout.
	RequestTimeout time.Duration
	// MaxAttempts bounds the transactions one request may take when the
	// shadow moved under it (store.ErrShadowMoved); 0: DefaultMaxAttempts.
	MaxAttempts int
}

// Stats counts what the gateway did with device publications since New.
type Stats struct {
	Handled int64 // requests answered (accepted or rejected by the shadow rules)
	Ignored int64 // publications that are no shadow request (answer topics and others)
	Forged  int64 // requests on another thing's topic than the sender's, dropped
	Failed  int64 // requests answered 500 because the store failed
	Retries int64 // transactions run again because the shadow moved
}

// Observer is told of every shadow request the gateway accepts, inside
// its transaction: the app decides there what a device's report means
// (action results, presses). doc is the shadow after the request; fetched
// is true for a get (the device read its desired state), false for an
// update. It returns what to run once the transaction has committed (nil:
// nothing), or an error that fails the request (a store.ErrShadowMoved or
// es.ConflictError one runs it again).
type Observer interface {
	ShadowSeen(ctx context.Context, tx *store.Tx, thing, shadowName string, doc shadow.Document, fetched bool, now time.Time) (after func(), err error)
}

// Gateway answers devices' shadow requests. New builds it; Start
// subscribes it to a Transport. Before Start (or without one) it still
// writes desired states (UpdateDesired): they wait in the store for the
// device.
type Gateway struct {
	st  *store.Store
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	t        Transport
	observer Observer
	online   map[string]bool

	handled, ignored, forged, failed, retries atomic.Int64
}

// New returns a Gateway over st; nothing is received or published before
// Start. A nil log discards the gateway's records.
func New(st *store.Store, cfg Config, log *slog.Logger) *Gateway {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Gateway{st: st, cfg: cfg, log: log, online: map[string]bool{}}
}

// Observe sets the observer of accepted requests; call it before Start.
func (g *Gateway) Observe(o Observer) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.observer = o
}

// SetOnline records whether thing is connected (the transport's presence);
// Online answers from it.
func (g *Gateway) SetOnline(thing string, online bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if online {
		g.online[thing] = true
	} else {
		delete(g.online, thing)
	}
}

// Online reports whether thing is connected, as far as this node knows.
func (g *Gateway) Online(thing string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.online[thing]
}

func (g *Gateway) transport() (Transport, Observer) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.t, g.observer
}

// Start subscribes the gateway to RequestFilter on t. A
// request is handled on the publishing device's delivery (see
// Transport.Subscribe): one device's requests are answered one after the
// other, in order, and a device waits for its request's transaction
// instead of the gateway buffering its messages. It returns the
// Transport's error, wrapped.
func (g *Gateway) Start(t Transport) error {
	g.mu.Lock()
	g.t = t
	g.mu.Unlock()
	if err := t.Subscribe(RequestFilter, g.onMessage); err != nil {
		return fmt.Errorf("devices: start gateway: %w", err)
	}
	return nil
}

// Stats returns the gateway's counters.
func (g *Gateway) Stats() Stats {
	return Stats{
		Handled: g.handled.Load(),
		Ignored: g.ignored.Load(),
		Forged:  g.forged.Load(),
		Failed:  g.failed.Load(),
		Retries: g.retries.Load(),
	}
}

// publication is one answer to publish after the commit.
type publication struct {
	topic   string
	payload []byte
}

func (g *Gateway) onMessage(thing, topic string, payload []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.RequestTimeout)
	defer cancel()
	g.publish(thing, g.handle(ctx, thing, topic, payload))
}

// handle runs one device publication and returns the answers to publish
// (none for a publication that is no request or is forged).
func (g *Gateway) handle(ctx context.Context, thing, topic string, payload []byte) []publication {
	target, shadowName, op, ok := shadow.ParseTopic(topic)
	if !ok {
		g.ignored.Add(1)
		return nil
	}
	if target != thing {
		g.forged.Add(1)
		g.log.Warn("devices: request on another thing's topic dropped", "thing", thing, "topic", topic)
		return nil
	}
	now := g.cfg.Now()
	var pubs []publication
	var after func()
	err := g.withRetry(ctx, thing, topic, func() error {
		return g.st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
			var err error
			// The job may run twice (store.Write): keep only the last run's answers.
			pubs, after, err = g.apply(ctx, tx, thing, shadowName, op, payload, now)
			return err
		})
	})
	if err != nil {
		g.failed.Add(1)
		g.log.Error("devices: shadow request failed", "thing", thing, "topic", topic, "err", err)
		rerr := &shadow.Error{Code: shadow.CodeInternal, Message: shadow.MsgInternal, Timestamp: now.Unix(), ClientToken: shadow.RequestToken(payload, g.cfg.Limits)}
		return []publication{rejection(thing, shadowName, op, rerr)}
	}
	g.handled.Add(1)
	if after != nil {
		after()
	}
	return pubs
}

// withRetry runs write again, up to MaxAttempts in all, while it fails
// because the shadow (or a stream the observer appends to) moved.
func (g *Gateway) withRetry(ctx context.Context, thing, topic string, write func() error) error {
	for attempt := 1; ; attempt++ {
		err := write()
		var conflict *es.ConflictError
		if !errors.Is(err, store.ErrShadowMoved) && !errors.As(err, &conflict) {
			return err
		}
		if attempt == g.cfg.MaxAttempts || ctx.Err() != nil {
			return fmt.Errorf("after %d attempts: %w", attempt, err)
		}
		g.retries.Add(1)
		g.log.Debug("devices: shadow moved, retrying", "thing", thing, "topic", topic, "attempt", attempt)
	}
}

// apply runs one request in tx: it reads the shadow, lets the shadow
// package decide and writes the result (an update is also logged as the
// device's status). A request the shadow rules refuse writes nothing and
// is answered on its /rejected topic. An accepted update or get is shown
// to the observer, whose after is returned. It returns the store's and the
// observer's errors.
func (g *Gateway) apply(ctx context.Context, tx *store.Tx, thing, shadowName, op string, payload []byte, now time.Time) ([]publication, func(), error) {
	cur, err := loadShadow(ctx, tx, thing, shadowName)
	if err != nil {
		return nil, nil, err
	}
	_, observer := g.transport()
	observe := func(doc shadow.Document, fetched bool) (func(), error) {
		if observer == nil {
			return nil, nil
		}
		return observer.ShadowSeen(ctx, tx, thing, shadowName, doc, fetched, now)
	}
	at, stamp := now.Unix(), now.UTC().Format(domain.TimeLayout)
	rejected := func(rerr *shadow.Error) []publication { return []publication{rejection(thing, shadowName, op, rerr)} }
	switch op {
	case shadow.OpUpdate:
		res, rerr := shadow.Update(cur, payload, at, g.cfg.Limits)
		if rerr != nil {
			return rejected(rerr), nil, nil
		}
		if msg := checkLayout(thing, shadowName, res.Document); msg != "" {
			return rejected(&shadow.Error{Code: shadow.CodeBadRequest, Message: msg, Timestamp: at, ClientToken: shadow.RequestToken(payload, g.cfg.Limits)}), nil, nil
		}
		if err := putShadow(ctx, tx, thing, shadowName, res.Document, cur.Version, stamp); err != nil {
			return nil, nil, err
		}
		if err := tx.LogShadowMessage(ctx, thing, store.ShadowStatus, payload, stamp); err != nil {
			return nil, nil, fmt.Errorf("devices: %w", err)
		}
		after, err := observe(res.Document, false)
		if err != nil {
			return nil, nil, err
		}
		return updateAnswers(thing, shadowName, res, true), after, nil
	case shadow.OpGet:
		body, rerr := shadow.Get(cur, thing, shadowName, payload, at, g.cfg.Limits)
		if rerr != nil {
			return rejected(rerr), nil, nil
		}
		after, err := observe(cur, true)
		if err != nil {
			return nil, nil, err
		}
		return []publication{{shadow.Topic(thing, shadowName, op, shadow.SuffixAccepted), body}}, after, nil
	case shadow.OpDelete:
		deleted, body, rerr := shadow.Delete(cur, thing, shadowName, payload, at, g.cfg.Limits)
		if rerr != nil {
			return rejected(rerr), nil, nil
		}
		if err := putShadow(ctx, tx, thing, shadowName, deleted, cur.Version, stamp); err != nil {
			return nil, nil, err
		}
		return []publication{{shadow.Topic(thing, shadowName, op, shadow.SuffixAccepted), body}}, nil, nil
	}
	return nil, nil, fmt.Errorf("devices: unknown shadow operation %q", op)
}

// rejection is the /rejected answer of a refused request.
func rejection(thing, shadowName, op string, rerr *shadow.Error) publication {
	return publication{shadow.Topic(thing, shadowName, op, shadow.SuffixRejected), rerr.Payload()}
}

// updateAnswers are the publications of an accepted update: /accepted
// (when the requester waits for it), /delta when desired and reported
// differ, and /documents.
func updateAnswers(thing, shadowName string, res shadow.UpdateResult, accepted bool) []publication {
	var pubs []publication
	if accepted {
		pubs = append(pubs, publication{shadow.Topic(thing, shadowName, shadow.OpUpdate, shadow.SuffixAccepted), res.Accepted})
	}
	if res.Delta != nil {
		pubs = append(pubs, publication{shadow.Topic(thing, shadowName, shadow.OpUpdate, shadow.SuffixDelta), res.Delta})
	}
	if res.Documents != nil {
		pubs = append(pubs, publication{shadow.Topic(thing, shadowName, shadow.OpUpdate, shadow.SuffixDocuments), res.Documents})
	}
	return pubs
}

// publish sends the answers at QoS 1, in order; a failure is logged (the
// transaction has committed: the device will read the shadow again).
func (g *Gateway) publish(thing string, pubs []publication) {
	t, _ := g.transport()
	if t == nil {
		return
	}
	for _, p := range pubs {
		if err := t.Publish(p.topic, p.payload, answerQoS); err != nil {
			g.log.Error("devices: publish shadow answer", "thing", thing, "topic", p.topic, "err", err)
		}
	}
}
