// The lock shadow layout, version 1: what spkey writes in the desired
// section of a lock's classic shadow (thing ThingName(lockID)) and what the
// lock's firmware reports. The README's "Lock firmware: the shadow layout
// (v1)" is the firmware author's description of the same rules.
//
// Requests are objects keyed by an id (keys by key UUID, open and writeKey
// by requestId), so AWS's merge semantics change one entry at a time and a
// null removes one. The lock reports an entry it has handled with the same
// fields and values as desired (adding result and error for open and
// writeKey), so the AWS delta lists exactly what is still to do. Removals
// never appear in a delta (AWS leaves out fields only in reported): the lock
// drops a reported entry whose desired entry is gone, which it sees in
// /update/documents or /get/accepted.

package lock

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/spkey-dev/spkey/internal/domain"
)

// Layout is the version of the shadow layout; every desired patch and every
// report carries it as "layout".
const Layout = 1

// Request kinds: the desired and reported fields that hold one-shot requests
// by requestId.
const (
	KindOpen     = "open"
	KindWriteKey = "writeKey"
)

// Bounds of a report, so that a misbehaving lock cannot make spkey hold or
// record more than this. AWS's 8 KB state limit is reached well before.
const (
	MaxReportedKeys    = 256
	MaxReportedResults = 64
	MaxResultErrorLen  = 200
	MaxFirmwareLen     = 64
	MaxPressIDLen      = 128
)

// Lock states a report may carry.
var lockStates = map[string]bool{"locked": true, "unlocked": true, "jammed": true, "unknown": true}

// KeyPages is how many key pages a lock has: its keys live in the named
// shadows KeyPage(keyUuid) of its thing, not in the classic shadow, so
// that a lock holds far more keys than one shadow's 8 KB of state allows
// (about 50 keys fit in a page, desired and reported together).
const KeyPages = 32

// KeyPagePrefix begins the name of every key page shadow.
const KeyPagePrefix = "keys-"

// KeyPage returns the named shadow that holds key keyUUID: "keys-00" to
// "keys-31", by the FNV-1a hash of the key's UUID modulo KeyPages.
func KeyPage(keyUUID string) string {
	h := uint32(2166136261)
	for i := 0; i < len(keyUUID); i++ {
		h ^= uint32(keyUUID[i])
		h *= 16777619
	}
	return fmt.Sprintf("%s%02d", KeyPagePrefix, h%KeyPages)
}

// IsKeyPage reports whether shadowName is one of KeyPage's names.
func IsKeyPage(shadowName string) bool {
	rest, ok := strings.CutPrefix(shadowName, KeyPagePrefix)
	if !ok || len(rest) != 2 {
		return false
	}
	n, err := strconv.Atoi(rest)
	return err == nil && n >= 0 && n < KeyPages
}

// Patch is a desired-state change of one shadow of the lock's thing:
// Shadow is "" for the classic shadow or a key page.
type Patch struct {
	Shadow  string
	Desired json.RawMessage
}

// DesiredFor returns the desired-state patches (the "desired" objects of
// shadow updates) that lock event e asks of the device; none for events
// the device has no part in. LockCreated sets the seed keys, KeyAdded and
// KeyRemoved set or delete keys[keyUuid] in the key's page, and
// LockOpenRequested and KeyWriteRequested add open[requestId] and
// writeKey[requestId] in the classic shadow, stamped with now (Unix
// seconds). Every patch carries "layout". The request id is the event's
// own when it has one (LockOpenRequested's requestId), else requestID,
// the action's id chosen by the caller.
//
// It returns an error when a request event has no request id at all
// (neither in the event nor requestID).
func DesiredFor(e domain.Event, requestID string, now int64) ([]Patch, error) {
	var patches []Patch
	add := func(shadowName string, d map[string]any) error {
		d["layout"] = Layout
		b, err := json.Marshal(d)
		if err != nil {
			return fmt.Errorf("desired state for %T: %w", e, err)
		}
		patches = append(patches, Patch{Shadow: shadowName, Desired: b})
		return nil
	}
	var err error
	switch v := e.(type) {
	case LockCreated:
		pages := map[string]map[string]any{}
		var names []string
		for _, k := range v.Keys {
			p := KeyPage(k.UUID)
			if pages[p] == nil {
				pages[p] = map[string]any{}
				names = append(names, p)
			}
			pages[p][k.UUID] = keyEntry(k.IndexNumber, now)
		}
		sort.Strings(names)
		for _, p := range names {
			if err = add(p, map[string]any{"keys": pages[p]}); err != nil {
				return nil, err
			}
		}
	case KeyAdded:
		err = add(KeyPage(v.KeyUUID), map[string]any{"keys": map[string]any{v.KeyUUID: keyEntry(v.KeyIndexNumber, now)}})
	case KeyRemoved:
		err = add(KeyPage(v.KeyUUID), map[string]any{"keys": map[string]any{v.KeyUUID: nil}})
	case LockOpenRequested:
		id := v.RequestID
		if id == "" {
			id = requestID
		}
		if id == "" {
			return nil, fmt.Errorf("desired state of lock %d: %s needs a request id", v.LockID, TypeLockOpenRequested)
		}
		err = add("", map[string]any{KindOpen: map[string]any{id: map[string]any{"at": now}}})
	case KeyWriteRequested:
		if requestID == "" {
			return nil, fmt.Errorf("desired state of lock %d: %s needs a request id", v.LockID, TypeKeyWriteRequested)
		}
		w := map[string]any{"at": now, "keyUuid": v.KeyUUID}
		if v.KeyIndexNumber != nil {
			w["index"] = *v.KeyIndexNumber
		}
		err = add("", map[string]any{KindWriteKey: map[string]any{requestID: w}})
	}
	if err != nil {
		return nil, err
	}
	return patches, nil
}

// keyEntry is desired.keys[keyUuid]. It always carries "at": AWS drops an
// empty object on merge, so a key without a slot would otherwise vanish.
func keyEntry(index *int64, now int64) map[string]any {
	k := map[string]any{"at": now}
	if index != nil {
		k["index"] = *index
	}
	return k
}

// DesiredClear returns the desired-state patch that removes request
// requestID of kind (KindOpen or KindWriteKey) once its result is recorded
// or it has expired; the lock then removes its reported entry. It returns
// an error for another kind or an empty requestID.
func DesiredClear(kind, requestID string) (json.RawMessage, error) {
	if kind != KindOpen && kind != KindWriteKey {
		return nil, fmt.Errorf("clear request %q: unknown kind %q", requestID, kind)
	}
	if requestID == "" {
		return nil, fmt.Errorf("clear %s request: empty request id", kind)
	}
	b, err := json.Marshal(map[string]any{kind: map[string]any{requestID: nil}})
	if err != nil {
		return nil, fmt.Errorf("clear %s request %q: %w", kind, requestID, err)
	}
	return b, nil
}

// Report is a lock's reported state, decoded and checked by ParseReported.
// A field the lock did not report is empty (nil, "" or 0 entries).
type Report struct {
	Keys     map[string]HeldKey // by key UUID: the keys the lock holds
	Open     map[string]Result  // by requestId
	WriteKey map[string]Result  // by requestId
	Lock     string             // "locked", "unlocked", "jammed", "unknown" or ""
	Battery  *int               // percent, 0-100
	Firmware string
	Doorbell *Press
}

// HeldKey is a key the lock reports holding: the desired entry it applied.
type HeldKey struct {
	At    int64
	Index *int64
}

// Result is the outcome of an open or write-key request: At is the
// request's at (copied from desired), Result "succeeded" or "failed",
// Error the lock's reason for a failure, if it gave one.
type Result struct {
	At     int64
	Result string
	Error  string
}

// Press is the last doorbell press: a new ID means a new press.
type Press struct {
	ID string
	At int64
}

// ParseReported decodes a shadow's reported section against the layout.
// An absent (empty or null) section gives an empty Report. Fields the
// layout does not name are ignored.
//
// It returns an Invalid *domain.Error naming the field (as
// "reported.keys[\"k1\"].index") when reported is not a JSON object, when
// layout is missing or not Layout, when a field has the wrong type or is
// out of range, or when there are more than MaxReportedKeys keys or
// MaxReportedResults results of a kind.
func ParseReported(reported json.RawMessage) (Report, error) {
	var r Report
	t := bytes.TrimSpace(reported)
	if len(t) == 0 || string(t) == "null" {
		return r, nil
	}
	top, err := object("reported", t)
	if err != nil {
		return Report{}, err
	}
	raw, ok := top["layout"]
	if !ok {
		return Report{}, invalid("reported.layout", "is required")
	}
	if v, err := integer("reported.layout", raw); err != nil {
		return Report{}, err
	} else if v != Layout {
		return Report{}, invalid("reported.layout", fmt.Sprintf("is %d, spkey speaks layout %d", v, Layout))
	}
	if raw, ok := top["keys"]; ok {
		if r.Keys, err = entries("reported.keys", raw, MaxReportedKeys, MaxKeyUUIDLen, parseKey); err != nil {
			return Report{}, err
		}
	}
	for _, kind := range []string{KindOpen, KindWriteKey} {
		raw, ok := top[kind]
		if !ok {
			continue
		}
		res, err := entries("reported."+kind, raw, MaxReportedResults, MaxRequestIDLen, parseResult)
		if err != nil {
			return Report{}, err
		}
		if kind == KindOpen {
			r.Open = res
		} else {
			r.WriteKey = res
		}
	}
	if raw, ok := top["lock"]; ok {
		if r.Lock, err = text("reported.lock", raw, 16); err != nil {
			return Report{}, err
		}
		if !lockStates[r.Lock] {
			return Report{}, invalid("reported.lock", "must be locked, unlocked, jammed or unknown")
		}
	}
	if raw, ok := top["battery"]; ok {
		v, err := integer("reported.battery", raw)
		if err != nil {
			return Report{}, err
		}
		if v < 0 || v > 100 {
			return Report{}, invalid("reported.battery", "must be between 0 and 100")
		}
		b := int(v)
		r.Battery = &b
	}
	if raw, ok := top["firmware"]; ok {
		if r.Firmware, err = text("reported.firmware", raw, MaxFirmwareLen); err != nil {
			return Report{}, err
		}
	}
	if raw, ok := top["doorbell"]; ok {
		fields, err := object("reported.doorbell", raw)
		if err != nil {
			return Report{}, err
		}
		var p Press
		if p.ID, err = text("reported.doorbell.pressId", fields["pressId"], MaxPressIDLen); err != nil {
			return Report{}, err
		}
		if p.ID == "" {
			return Report{}, invalid("reported.doorbell.pressId", "must not be empty")
		}
		if p.At, err = integer("reported.doorbell.at", fields["at"]); err != nil {
			return Report{}, err
		}
		r.Doorbell = &p
	}
	return r, nil
}

// entries decodes an object of at most maxN entries whose names are 1 to
// maxName characters, each value by parse.
func entries[T any](field string, raw json.RawMessage, maxN, maxName int, parse func(string, map[string]json.RawMessage) (T, error)) (map[string]T, error) {
	all, err := object(field, raw)
	if err != nil {
		return nil, err
	}
	if len(all) > maxN {
		return nil, invalid(field, fmt.Sprintf("has %d entries, at most %d", len(all), maxN))
	}
	out := make(map[string]T, len(all))
	for name, v := range all {
		f := field + "[" + strconv.Quote(name) + "]"
		if name == "" || utf8.RuneCountInString(name) > maxName {
			return nil, invalid(f, fmt.Sprintf("name must be 1 to %d characters", maxName))
		}
		fields, err := object(f, v)
		if err != nil {
			return nil, err
		}
		if out[name], err = parse(f, fields); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func parseKey(f string, fields map[string]json.RawMessage) (HeldKey, error) {
	var k HeldKey
	var err error
	if k.At, err = integer(f+".at", fields["at"]); err != nil {
		return HeldKey{}, err
	}
	if raw, ok := fields["index"]; ok {
		n, err := integer(f+".index", raw)
		if err != nil {
			return HeldKey{}, err
		}
		if n > domain.MaxID || n < -domain.MaxID {
			return HeldKey{}, invalid(f+".index", "is out of range")
		}
		k.Index = &n
	}
	return k, nil
}

func parseResult(f string, fields map[string]json.RawMessage) (Result, error) {
	var r Result
	var err error
	if r.At, err = integer(f+".at", fields["at"]); err != nil {
		return Result{}, err
	}
	if r.Result, err = text(f+".result", fields["result"], 16); err != nil {
		return Result{}, err
	}
	if r.Result != "succeeded" && r.Result != "failed" {
		return Result{}, invalid(f+".result", "must be succeeded or failed")
	}
	if raw, ok := fields["error"]; ok {
		if r.Error, err = text(f+".error", raw, MaxResultErrorLen); err != nil {
			return Result{}, err
		}
	}
	return r, nil
}

// object decodes raw as a JSON object.
func object(field string, raw json.RawMessage) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if len(raw) == 0 {
		return nil, invalid(field, "is required")
	}
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, invalid(field, "must be an object")
	}
	return m, nil
}

// integer decodes raw as a JSON number without fraction or exponent.
func integer(field string, raw json.RawMessage) (int64, error) {
	if len(raw) == 0 {
		return 0, invalid(field, "is required")
	}
	// ParseInt takes the literal itself, so a string ("3"), a fraction
	// or an exponent is refused.
	v, err := strconv.ParseInt(string(bytes.TrimSpace(raw)), 10, 64)
	if err != nil {
		return 0, invalid(field, "must be an integer")
	}
	return v, nil
}

// text decodes raw as a JSON string of at most maxLen characters.
func text(field string, raw json.RawMessage, maxLen int) (string, error) {
	if len(raw) == 0 {
		return "", invalid(field, "is required")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", invalid(field, "must be a string")
	}
	if utf8.RuneCountInString(s) > maxLen {
		return "", invalid(field, fmt.Sprintf("must be at most %d characters", maxLen))
	}
	return s, nil
}

func invalid(field, msg string) error {
	return domain.InvalidField(field, field+" "+msg)
}
