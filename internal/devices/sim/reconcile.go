package sim

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/spkey-dev/spkey/internal/domain/lock"
)

// state is a shadow's desired or reported section as layout v1 reads it:
// each entry kept as raw JSON, so that it is reported back unchanged.
type state struct {
	Keys     map[string]json.RawMessage `json:"keys"`
	Open     map[string]json.RawMessage `json:"open"`
	WriteKey map[string]json.RawMessage `json:"writeKey"`
}

func (s state) requests(kind string) map[string]json.RawMessage {
	if kind == kindOpen {
		return s.Open
	}
	return s.WriteKey
}

// doc is the part of an answer the lock reads: the state (get/accepted,
// delta) or the current document (update/documents), and its version.
type doc struct {
	State struct {
		Desired  state `json:"desired"`
		Reported state `json:"reported"`
	} `json:"state"`
	Version int64 `json:"version"`
}

// onMessage handles one answer of a shadow of the lock's thing, the
// classic one or a key page (paho calls it in order).
func (l *Lock) onMessage(_ paho.Client, m paho.Message) {
	topic := m.Topic()
	shadowName := l.shadowOf(topic)
	switch {
	case strings.HasSuffix(topic, "/get/rejected"):
		// No shadow yet (404): nothing is desired; the first report made it.
		return
	case strings.HasSuffix(topic, "/update/documents"):
		var d struct {
			Current doc `json:"current"`
		}
		if err := json.Unmarshal(m.Payload(), &d); err != nil {
			l.print("unreadable %s: %v", topic, err)
			return
		}
		l.reconcile(shadowName, d.Current, true, false)
	case strings.HasSuffix(topic, "/get/accepted"):
		var d doc
		if err := json.Unmarshal(m.Payload(), &d); err != nil {
			l.print("unreadable %s: %v", topic, err)
			return
		}
		l.print("shadow version %d read (get)", d.Version)
		l.reconcile(shadowName, d, true, true)
	case strings.HasSuffix(topic, "/update/delta"):
		// A delta names desired entries not reported yet; it never shows a
		// removal, which the documents and gets bring.
		var d struct {
			State   state `json:"state"`
			Version int64 `json:"version"`
		}
		if err := json.Unmarshal(m.Payload(), &d); err != nil {
			l.print("unreadable %s: %v", topic, err)
			return
		}
		var full doc
		full.Version, full.State.Desired = d.Version, d.State
		l.reconcile(shadowName, full, false, false)
	}
}

// reconcile compares desired with what the lock holds and reports: keys
// added or changed are held and reported as desired, keys gone from
// desired are dropped and reported null, requests not acted on are
// scheduled, results whose request is gone are reported null. whole says
// d is the whole document (reported included); a delta is not. Documents
// older than one already seen are skipped.
//
// Keys live in the key pages (lock.KeyPage), requests in the classic
// shadow (shadowName ""): each shadow reconciles its own part.
func (l *Lock) reconcile(shadowName string, d doc, whole, fetched bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || d.Version < l.version[shadowName] {
		return
	}
	l.version[shadowName] = d.Version
	desired, reported := d.State.Desired, d.State.Reported
	if shadowName != "" {
		l.reconcileKeys(shadowName, desired, reported, whole)
		return
	}
	out := map[string]any{}
	for _, kind := range []string{kindOpen, kindWriteKey} {
		if r := l.reconcileRequests(kind, desired.requests(kind), reported.requests(kind), whole, fetched); len(r) > 0 {
			out[kind] = r
		}
	}
	if len(out) > 0 {
		l.report("", out)
	}
}

// reconcileKeys reconciles key page page. l.mu is held.
func (l *Lock) reconcileKeys(page string, desired, reported state, whole bool) {
	keys := map[string]any{}
	for _, id := range sortedIDs(desired.Keys) {
		entry := desired.Keys[id]
		if isNull(entry) {
			continue
		}
		held, ok := l.keys[id]
		if whole && jsonEqual(reported.Keys[id], entry) {
			l.keys[id] = entry // reported already (maybe by an earlier run)
			continue
		}
		if !ok || !jsonEqual(held, entry) {
			l.keys[id] = entry
			l.print("key %s stored %s", id, entry)
		}
		keys[id] = entry
	}
	if whole {
		for id := range union(l.keys, reported.Keys) {
			if lock.KeyPage(id) != page {
				continue // another page's key
			}
			if _, ok := desired.Keys[id]; ok && !isNull(desired.Keys[id]) {
				continue
			}
			if _, held := l.keys[id]; held {
				l.print("key %s removed", id)
			}
			delete(l.keys, id)
			if _, ok := reported.Keys[id]; ok {
				keys[id] = nil
			}
		}
	}
	if len(keys) > 0 {
		l.report(page, map[string]any{"layout": Layout, "keys": keys})
	}
}

// reconcileRequests schedules the requests of kind that were neither acted
// on nor reported, reports again a result that is not in reported (lost
// while offline: only on a get, the document read at connect; a document
// published while the lock's own report is on its way is stale, and
// answering it would report again and again), and reports null, once, the
// results whose request is gone. It returns the entries to report now.
// l.mu is held.
func (l *Lock) reconcileRequests(kind string, desired, reported map[string]json.RawMessage, whole, fetched bool) map[string]any {
	out := map[string]any{}
	done := l.handled[kind]
	for _, rid := range sortedIDs(desired) {
		entry := desired[rid]
		if isNull(entry) {
			continue
		}
		if _, ok := reported[rid]; ok && whole {
			continue
		}
		if result, ok := done[rid]; ok {
			if fetched {
				out[rid] = result
			}
			continue
		}
		if l.pending[kind+"/"+rid] != nil {
			continue
		}
		l.schedule(kind, rid, entry)
	}
	if whole {
		for rid := range union(done, reported) {
			if e, ok := desired[rid]; ok && !isNull(e) {
				continue
			}
			delete(done, rid)
			key := kind + "/" + rid
			if _, ok := reported[rid]; !ok {
				delete(l.cleared, key) // gone from reported: done
				continue
			}
			if l.cleared[key] && !fetched {
				continue // reported null already; this document is older
			}
			if len(l.cleared) >= maxHandled {
				clear(l.cleared)
			}
			l.cleared[key] = true
			out[rid] = nil
		}
	}
	return out
}

// schedule acts on request rid of kind after the delay, once. l.mu is
// held.
func (l *Lock) schedule(kind, rid string, entry json.RawMessage) {
	l.pending[kind+"/"+rid] = time.AfterFunc(l.cfg.Delay, func() { l.act(kind, rid, entry) })
}

// act finishes request rid: its result is the desired entry with result
// (and error), remembered and reported.
func (l *Lock) act(kind, rid string, entry json.RawMessage) {
	var fields map[string]any
	if err := json.Unmarshal(entry, &fields); err != nil || fields == nil {
		fields = map[string]any{}
	}
	var errMsg string
	if at, ok := fields["at"].(float64); ok && l.cfg.MaxAge > 0 && l.cfg.Now().Sub(time.Unix(int64(at), 0)) > l.cfg.MaxAge {
		errMsg = "expired"
	} else if l.cfg.FailRate > 0 && l.cfg.Rand() < l.cfg.FailRate {
		errMsg = FailureMessage
	}
	if errMsg != "" {
		fields["result"], fields["error"] = "failed", errMsg
	} else {
		fields["result"] = "succeeded"
	}
	result, err := json.Marshal(fields)
	if err != nil {
		return
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	delete(l.pending, kind+"/"+rid)
	if len(l.handled[kind]) >= maxHandled {
		// Bounded: the oldest results are the least likely still desired.
		for id := range l.handled[kind] {
			delete(l.handled[kind], id)
			break
		}
	}
	l.handled[kind][rid] = result
	online := l.client.IsConnectionOpen()
	l.mu.Unlock()
	what := kind + " " + rid
	if key, ok := fields["keyUuid"].(string); ok && kind == kindWriteKey {
		what += " (key " + key + ")"
	}
	if errMsg != "" {
		l.print("%s failed: %s", what, errMsg)
	} else {
		l.print("%s succeeded", what)
	}
	if online {
		l.report("", map[string]any{kind: map[string]any{rid: json.RawMessage(result)}})
	}
}

func isNull(raw json.RawMessage) bool { return len(raw) == 0 || string(raw) == "null" }

// jsonEqual compares two JSON values, whatever their spacing and member
// order.
func jsonEqual(a, b json.RawMessage) bool {
	if isNull(a) || isNull(b) {
		return isNull(a) && isNull(b)
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return bytes.Equal(xb, yb)
}

func sortedIDs(m map[string]json.RawMessage) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func union(a, b map[string]json.RawMessage) map[string]bool {
	u := make(map[string]bool, len(a)+len(b))
	for id := range a {
		u[id] = true
	}
	for id := range b {
		u[id] = true
	}
	return u
}
