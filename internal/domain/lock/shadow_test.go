package lock_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/domain/shadow"
)

const at = int64(1764780000)

// decoded decodes a JSON object the way the shadow package holds state.
func decoded(t *testing.T, b []byte) map[string]any {
	t.Helper()
	if len(b) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return m
}

func TestDesiredFor(t *testing.T) {
	pg := lock.KeyPage
	for _, c := range []struct {
		name      string
		e         domain.Event
		requestID string
		want      map[string]string // shadow name to patch; none when no patch is expected
		wantErr   bool
	}{
		{name: "created with seed keys", e: lock.LockCreated{LockID: 7, Keys: []lock.Key{{UUID: "k0", IndexNumber: idx(0), UserID: holder}, {UUID: "k2"}}},
			want: map[string]string{pg("k0"): `{"layout":1,"keys":{"k0":{"at":1764780000,"index":0}}}`, pg("k2"): `{"layout":1,"keys":{"k2":{"at":1764780000}}}`}},
		{name: "created without keys", e: lock.LockCreated{LockID: 7, Keys: []lock.Key{}}},
		{name: "key added", e: lock.KeyAdded{LockID: 7, KeyUUID: "k3", KeyIndexNumber: idx(-3), UserID: holder},
			want: map[string]string{pg("k3"): `{"layout":1,"keys":{"k3":{"at":1764780000,"index":-3}}}`}},
		{name: "key added without slot", e: lock.KeyAdded{LockID: 7, KeyUUID: "k4"}, want: map[string]string{pg("k4"): `{"layout":1,"keys":{"k4":{"at":1764780000}}}`}},
		{name: "key removed", e: lock.KeyRemoved{LockID: 7, KeyUUID: "k3", KeyIndexNumber: idx(3)}, want: map[string]string{pg("k3"): `{"layout":1,"keys":{"k3":null}}`}},
		{name: "open with its own request id", e: lock.LockOpenRequested{LockID: 7, RequestID: "r-1", Reason: "visitor"}, requestID: "ignored",
			want: map[string]string{"": `{"layout":1,"open":{"r-1":{"at":1764780000}}}`}},
		{name: "open with the caller's id", e: lock.LockOpenRequested{LockID: 7}, requestID: "act-9", want: map[string]string{"": `{"layout":1,"open":{"act-9":{"at":1764780000}}}`}},
		{name: "open without any id", e: lock.LockOpenRequested{LockID: 7}, wantErr: true},
		{name: "write key", e: lock.KeyWriteRequested{LockID: 7, KeyUUID: "k1", KeyIndexNumber: idx(1)}, requestID: "w-1",
			want: map[string]string{"": `{"layout":1,"writeKey":{"w-1":{"at":1764780000,"index":1,"keyUuid":"k1"}}}`}},
		{name: "write key without id", e: lock.KeyWriteRequested{LockID: 7, KeyUUID: "k1"}, wantErr: true},
		{name: "owner set", e: lock.OwnerSet{LockID: 7, UserID: holder}},
		{name: "resident added", e: lock.ResidentAdded{LockID: 7, UserID: holder, Name: "A"}},
		{name: "uuid changed", e: lock.LockUUIDChanged{LockID: 7, NewUUID: devU}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := lock.DesiredFor(c.e, c.requestID, at)
			if (err != nil) != c.wantErr {
				t.Fatalf("DesiredFor error = %v, want error %v", err, c.wantErr)
			}
			want, have := map[string]any{}, map[string]any{}
			for name, patch := range c.want {
				want[name] = decoded(t, []byte(patch))
			}
			for _, p := range got {
				if _, twice := have[p.Shadow]; twice {
					t.Errorf("two patches of shadow %q", p.Shadow)
				}
				have[p.Shadow] = decoded(t, p.Desired)
			}
			if diff := cmp.Diff(want, have); diff != "" {
				t.Errorf("DesiredFor by shadow (-want +got):\n%s", diff)
			}
		})
	}
}

// TestKeyPage: a key's page is stable, named keys-00 to keys-31, and
// spreads keys over every page.
func TestKeyPage(t *testing.T) {
	seen := map[string]int{}
	for i := range 2000 {
		p := lock.KeyPage(fmt.Sprintf("key-%d", i))
		if !lock.IsKeyPage(p) || p != lock.KeyPage(fmt.Sprintf("key-%d", i)) {
			t.Fatalf("KeyPage(key-%d) = %q", i, p)
		}
		seen[p]++
	}
	if len(seen) != lock.KeyPages {
		t.Errorf("2000 keys use %d pages, want %d", len(seen), lock.KeyPages)
	}
	for p, n := range seen {
		if n > 2*2000/lock.KeyPages {
			t.Errorf("page %s holds %d of 2000 keys", p, n)
		}
	}
	for _, name := range []string{"", "keys-", "keys-32", "keys-1", "keys-001", "keys-aa", "key-01"} {
		if lock.IsKeyPage(name) {
			t.Errorf("IsKeyPage(%q) = true", name)
		}
	}
}

func TestDesiredClear(t *testing.T) {
	for _, c := range []struct {
		kind, id, want string
	}{
		{lock.KindOpen, "r-1", `{"open":{"r-1":null}}`},
		{lock.KindWriteKey, "w-1", `{"writeKey":{"w-1":null}}`},
		{"keys", "k1", ""},
		{lock.KindOpen, "", ""},
	} {
		got, err := lock.DesiredClear(c.kind, c.id)
		if (err != nil) != (c.want == "") {
			t.Fatalf("DesiredClear(%q, %q) error = %v", c.kind, c.id, err)
		}
		if diff := cmp.Diff(decoded(t, []byte(c.want)), decoded(t, got)); diff != "" {
			t.Errorf("DesiredClear(%q, %q) (-want +got):\n%s", c.kind, c.id, diff)
		}
	}
}

// thing is a lock's classic shadow driven through shadow.Update as spkey
// (desired) and the lock (reported) would.
type thing struct {
	t   *testing.T
	doc shadow.Document
	now int64
}

// update applies {"state":{section: patch}}.
func (th *thing) update(section string, patch []byte) {
	th.t.Helper()
	th.now++
	req := fmt.Sprintf(`{"state":{%q:%s}}`, section, patch)
	res, rerr := shadow.Update(th.doc, []byte(req), th.now, shadow.Limits{})
	if rerr != nil {
		th.t.Fatalf("update %s: %v", req, rerr)
	}
	th.doc = res.Document
}

// apply sends DesiredFor(e).
func (th *thing) apply(e domain.Event, requestID string) {
	th.t.Helper()
	patches, err := lock.DesiredFor(e, requestID, at)
	if err != nil || len(patches) == 0 {
		th.t.Fatalf("DesiredFor(%T) = %v, %v", e, patches, err)
	}
	// The merge rules are the same in every shadow: this test holds the
	// key pages and the classic shadow in one document.
	for _, p := range patches {
		th.update("desired", p.Desired)
	}
}

func (th *thing) delta() map[string]any { return shadow.Delta(th.doc.Desired, th.doc.Reported) }

func (th *thing) wantDelta(want string) {
	th.t.Helper()
	if diff := cmp.Diff(decoded(th.t, []byte(want)), th.delta()); diff != "" {
		th.t.Errorf("delta (-want +got):\n%s", diff)
	}
}

func TestLayoutKeysThroughShadow(t *testing.T) {
	th := &thing{t: t, now: at}
	th.apply(lock.LockCreated{LockID: 7, Keys: []lock.Key{{UUID: "k0", IndexNumber: idx(0)}, {UUID: "k2"}}}, "")
	th.wantDelta(`{"layout":1,"keys":{"k0":{"at":1764780000,"index":0},"k2":{"at":1764780000}}}`)
	th.update("reported", []byte(`{"layout":1,"keys":{"k0":{"at":1764780000,"index":0},"k2":{"at":1764780000}},"lock":"locked"}`))
	th.wantDelta(``)

	th.apply(lock.KeyAdded{LockID: 7, KeyUUID: "k3", KeyIndexNumber: idx(3), UserID: holder}, "")
	th.wantDelta(`{"keys":{"k3":{"at":1764780000,"index":3}}}`)
	th.update("reported", []byte(`{"keys":{"k3":{"at":1764780000,"index":3}}}`))
	th.wantDelta(``)

	// A removal is not in the delta (fields only in reported never are):
	// the lock sees desired.keys without k3 and reports k3 as null.
	th.apply(lock.KeyRemoved{LockID: 7, KeyUUID: "k3"}, "")
	th.wantDelta(``)
	if _, ok := th.doc.Desired["keys"].(map[string]any)["k3"]; ok {
		t.Errorf("desired keeps k3 after KeyRemoved: %v", th.doc.Desired["keys"])
	}
	th.update("reported", []byte(`{"keys":{"k3":null}}`))
	r := report(t, th.doc.Reported)
	if diff := cmp.Diff(map[string]lock.HeldKey{"k0": {At: at, Index: idx(0)}, "k2": {At: at}}, r.Keys); diff != "" {
		t.Errorf("held keys (-want +got):\n%s", diff)
	}
}

func TestLayoutAddThenRemoveLeavesNoKey(t *testing.T) {
	th := &thing{t: t, now: at}
	th.apply(lock.KeyAdded{LockID: 7, KeyUUID: "k5"}, "")
	th.wantDelta(`{"layout":1,"keys":{"k5":{"at":1764780000}}}`)
	th.apply(lock.KeyRemoved{LockID: 7, KeyUUID: "k5"}, "")
	if diff := cmp.Diff(map[string]any{"layout": json.Number("1")}, th.doc.Desired); diff != "" {
		t.Errorf("desired after add and remove (-want +got):\n%s", diff)
	}
}

func TestLayoutRequestsThroughShadow(t *testing.T) {
	for _, c := range []struct {
		kind, id string
		e        domain.Event
		entry    string // desired entry
	}{
		{lock.KindOpen, "r-1", lock.LockOpenRequested{LockID: 7, RequestID: "r-1", Reason: "delivery"}, `{"at":1764780000}`},
		{lock.KindWriteKey, "w-1", lock.KeyWriteRequested{LockID: 7, KeyUUID: "k1"}, `{"at":1764780000,"keyUuid":"k1"}`},
	} {
		t.Run(c.kind, func(t *testing.T) {
			th := &thing{t: t, now: at}
			th.update("reported", []byte(`{"layout":1}`))
			th.apply(c.e, c.id)
			th.wantDelta(fmt.Sprintf(`{%q:{%q:%s}}`, c.kind, c.id, c.entry))

			result := strings.TrimSuffix(c.entry, "}") + `,"result":"failed","error":"jammed"}`
			th.update("reported", []byte(fmt.Sprintf(`{%q:{%q:%s}}`, c.kind, c.id, result)))
			th.wantDelta(``)
			got := report(t, th.doc.Reported)
			want := map[string]lock.Result{c.id: {At: at, Result: "failed", Error: "jammed"}}
			if c.kind == lock.KindOpen {
				if diff := cmp.Diff(want, got.Open); diff != "" {
					t.Errorf("open results (-want +got):\n%s", diff)
				}
			} else if diff := cmp.Diff(want, got.WriteKey); diff != "" {
				t.Errorf("write-key results (-want +got):\n%s", diff)
			}

			clear, err := lock.DesiredClear(c.kind, c.id)
			if err != nil {
				t.Fatal(err)
			}
			th.update("desired", clear)
			if _, ok := th.doc.Desired[c.kind]; ok {
				t.Errorf("desired keeps %s after DesiredClear: %v", c.kind, th.doc.Desired)
			}
			th.update("reported", []byte(fmt.Sprintf(`{%q:{%q:null}}`, c.kind, c.id)))
			th.wantDelta(``)
			if _, ok := th.doc.Reported[c.kind]; ok {
				t.Errorf("reported keeps %s: %v", c.kind, th.doc.Reported)
			}
		})
	}
}

// TestLayoutOpenLeavesDeltaWhenCleared: a request spkey clears before the
// lock answers (expired) leaves the delta.
func TestLayoutOpenLeavesDeltaWhenCleared(t *testing.T) {
	th := &thing{t: t, now: at}
	th.update("reported", []byte(`{"layout":1}`))
	th.apply(lock.LockOpenRequested{LockID: 7}, "act-1")
	th.wantDelta(`{"open":{"act-1":{"at":1764780000}}}`)
	clear, err := lock.DesiredClear(lock.KindOpen, "act-1")
	if err != nil {
		t.Fatal(err)
	}
	th.update("desired", clear)
	th.wantDelta(``)
}

// TestLayoutCapacity pins how many keys AWS's 8 KB state holds: UUID key
// ids with a slot, in desired and reported by the lock.
func TestLayoutCapacity(t *testing.T) {
	fits := func(n int) bool {
		keys := map[string]any{}
		for i := range n {
			keys[fmt.Sprintf("6f1c2e9a-0b3d-4c5e-8f7a-%012d", i)] = map[string]any{"at": at, "index": i}
		}
		state, _ := json.Marshal(map[string]any{"layout": 1, "keys": keys})
		req := fmt.Sprintf(`{"state":{"desired":%s,"reported":%s}}`, state, state)
		_, rerr := shadow.Update(shadow.Document{}, []byte(req), at, shadow.Limits{})
		return rerr == nil
	}
	if !fits(55) || fits(65) {
		t.Errorf("8 KB holds 55 keys: %v, 65 keys: %v; want true, false", fits(55), fits(65))
	}
}

func report(t *testing.T, reported map[string]any) lock.Report {
	t.Helper()
	b, err := json.Marshal(reported)
	if err != nil {
		t.Fatal(err)
	}
	r, err := lock.ParseReported(b)
	if err != nil {
		t.Fatalf("ParseReported(%s): %v", b, err)
	}
	return r
}
