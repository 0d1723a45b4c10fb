package lock_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/lock"
)

// actNow is the time the action tests ask at; actAt its Unix second (the
// desired entries' stamp); actExp when their actions expire.
var (
	actNow = time.Date(2026, 2, 3, 4, 5, 6, 789_000_000, time.UTC)
	actAt  = actNow.Unix()
	actExp = actNow.Add(time.Minute)
)

const actExpStamp = "2026-02-03T04:06:06.789Z"

// actCommand returns the command event of action kind on lock 7 (seeded).
func actCommand(kind, requestID string) domain.Event {
	switch kind {
	case lock.ActionAddKey:
		return lock.KeyAdded{LockID: 7, UUID: devU, Timestamp: tsNow, KeyUUID: "k9", KeyIndexNumber: idx(9), UserID: holder}
	case lock.ActionRemoveKey:
		return lock.KeyRemoved{LockID: 7, UUID: devU, Timestamp: tsNow, KeyUUID: "k1", KeyIndexNumber: idx(1)}
	case lock.ActionWriteKey:
		return lock.KeyWriteRequested{LockID: 7, UUID: devU, Timestamp: tsNow, KeyUUID: "k0", KeyIndexNumber: idx(0)}
	case lock.ActionOpenLock:
		return lock.LockOpenRequested{LockID: 7, UUID: devU, Timestamp: tsNow, RequestID: requestID, Reason: "visitor"}
	}
	panic("actCommand: unknown kind " + kind)
}

// opened returns s after the action of c (decided, which must succeed).
func opened(t testing.TB, s lock.State, c lock.NewAction) lock.State {
	t.Helper()
	e, ok, err := lock.DecideNewAction(s, c)
	if err != nil || !ok {
		t.Fatalf("DecideNewAction(%s) = %v, %v, %v", c.RequestID, e, ok, err)
	}
	return lock.Apply(s, e)
}

// withActions returns the seeded lock with one open action per entry of
// as (their Status and At as given).
func withActions(as ...lock.Action) lock.State {
	s := seeded()
	for _, a := range as {
		s = lock.Apply(s, lock.LockActionUpdated{LockID: 7, UUID: devU, Timestamp: tsNow, RequestID: a.RequestID,
			Action: a.Action, Status: a.Status, KeyUUID: a.KeyUUID, At: a.At, ExpiresAt: a.ExpiresAt})
	}
	return s
}

func TestDecideNewAction(t *testing.T) {
	s := seeded()
	for _, tc := range []struct {
		kind, keyUUID string
		index         *int64
	}{
		{lock.ActionAddKey, "k9", idx(9)},
		{lock.ActionRemoveKey, "k1", idx(1)},
		{lock.ActionWriteKey, "k0", idx(0)},
		{lock.ActionOpenLock, "", nil},
	} {
		for _, online := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s online=%v", tc.kind, online), func(t *testing.T) {
				// Expires in another zone: ExpiresAt is UTC.
				exp := actExp.In(time.FixedZone("CET", 3600))
				e, ok, err := lock.DecideNewAction(s, lock.NewAction{RequestID: "r-1", Command: actCommand(tc.kind, "r-1"),
					At: actAt, Online: online, Now: tsNow, Expires: exp})
				if err != nil || !ok {
					t.Fatalf("DecideNewAction = %v, %v, %v", e, ok, err)
				}
				status := lock.StatusPending
				if !online {
					status = lock.StatusQueued
				}
				want := lock.LockActionUpdated{LockID: 7, UUID: devU, Timestamp: tsNow, RequestID: "r-1", Action: tc.kind,
					Status: status, KeyUUID: tc.keyUUID, KeyIndexNumber: tc.index, At: actAt, ExpiresAt: actExpStamp}
				if d := cmp.Diff(domain.Event(want), e); d != "" {
					t.Errorf("event (-want +got):\n%s", d)
				}
				if name := lock.Events.Name(e); name != lock.TypeLockActionUpdated {
					t.Errorf("event name %q, want %q", name, lock.TypeLockActionUpdated)
				}
				after := lock.Apply(s, e)
				wantActs := []lock.Action{{RequestID: "r-1", Action: tc.kind, Status: status, KeyUUID: tc.keyUUID, At: actAt, ExpiresAt: actExpStamp}}
				if d := cmp.Diff(wantActs, after.Actions); d != "" {
					t.Errorf("actions after the event (-want +got):\n%s", d)
				}
			})
		}
	}
}

func TestDecideNewActionIgnoresOtherEvents(t *testing.T) {
	s := seeded()
	for _, e := range []domain.Event{
		lock.LockCreated{LockID: 7, UUID: devU, Timestamp: tsNow},
		lock.OwnerSet{LockID: 7, UUID: devU, Timestamp: tsNow, UserID: holder},
		lock.OrganizationSet{LockID: 7, UUID: devU, Timestamp: tsNow, OrgID: "acme"},
		lock.ResidentAdded{LockID: 7, UUID: devU, Timestamp: tsNow, UserID: holder, Name: "H"},
		lock.LockUUIDChanged{LockID: 7, UUID: devU, Timestamp: tsNow, NewUUID: "x", PreviousUUID: devU},
		lock.LockActionUpdated{LockID: 7, UUID: devU, RequestID: "r-1", Status: lock.StatusPending},
		nil,
	} {
		got, ok, err := lock.DecideNewAction(s, lock.NewAction{RequestID: "r-1", Command: e, At: actAt, Online: true, Now: tsNow, Expires: actExp})
		if got != nil || ok || err != nil {
			t.Errorf("DecideNewAction(%T) = %v, %v, %v; want nil, false, nil", e, got, ok, err)
		}
	}
	// Not even on a lock at its bound of open actions.
	full := s
	for i := range lock.MaxOpenActions {
		full = opened(t, full, lock.NewAction{RequestID: fmt.Sprintf("r-%d", i), Command: actCommand(lock.ActionOpenLock, ""),
			At: actAt, Online: true, Now: tsNow, Expires: actExp})
	}
	got, ok, err := lock.DecideNewAction(full, lock.NewAction{RequestID: "r-x", Command: lock.OwnerSet{LockID: 7, UserID: holder}, Now: tsNow, Expires: actExp})
	if got != nil || ok || err != nil {
		t.Errorf("DecideNewAction(OwnerSet) on a full lock = %v, %v, %v; want nil, false, nil", got, ok, err)
	}
}

func TestDecideNewActionConflict(t *testing.T) {
	s := opened(t, seeded(), lock.NewAction{RequestID: "r-1", Command: actCommand(lock.ActionOpenLock, "r-1"), At: actAt, Online: true, Now: tsNow, Expires: actExp})
	for _, kind := range []string{lock.ActionOpenLock, lock.ActionAddKey, lock.ActionRemoveKey, lock.ActionWriteKey} {
		e, ok, err := lock.DecideNewAction(s, lock.NewAction{RequestID: "r-1", Command: actCommand(kind, "r-1"), At: actAt + 1, Online: true, Now: tsNow, Expires: actExp})
		if domain.ErrorCode(err) != domain.Conflict || ok || e != nil {
			t.Errorf("%s with the requestId of an open action = %v, %v, %v (code %s); want Conflict", kind, e, ok, err, domain.ErrorCode(err))
		}
	}
	// Delivered is still open.
	s = lock.Apply(s, lock.DecideReport(s, "", lock.Report{}, true, tsNow)[0])
	if _, _, err := lock.DecideNewAction(s, lock.NewAction{RequestID: "r-1", Command: actCommand(lock.ActionOpenLock, "r-1"), At: actAt, Online: true, Now: tsNow, Expires: actExp}); domain.ErrorCode(err) != domain.Conflict {
		t.Errorf("requestId of a delivered action: %v, want Conflict", err)
	}
	// Once finished, the requestId may be used again.
	s = lock.Apply(s, lock.DecideReport(s, "", lock.Report{Open: map[string]lock.Result{"r-1": {At: actAt, Result: lock.StatusSucceeded}}}, false, tsNow)[0])
	if len(s.Actions) != 0 {
		t.Fatalf("actions after the result: %+v", s.Actions)
	}
	if _, ok, err := lock.DecideNewAction(s, lock.NewAction{RequestID: "r-1", Command: actCommand(lock.ActionOpenLock, "r-1"), At: actAt + 5, Online: true, Now: tsNow, Expires: actExp}); err != nil || !ok {
		t.Errorf("requestId of a finished action: %v, %v; want a new action", ok, err)
	}
	// Another requestId is no conflict.
	if _, ok, err := lock.DecideNewAction(s, lock.NewAction{RequestID: "r-2", Command: actCommand(lock.ActionOpenLock, "r-2"), At: actAt, Online: false, Now: tsNow, Expires: actExp}); err != nil || !ok {
		t.Errorf("another requestId: %v, %v", ok, err)
	}
}

func TestDecideNewActionTooMany(t *testing.T) {
	s := seeded()
	kinds := []string{lock.ActionOpenLock, lock.ActionAddKey, lock.ActionRemoveKey, lock.ActionWriteKey}
	for i := range lock.MaxOpenActions {
		id := fmt.Sprintf("r-%d", i)
		s = opened(t, s, lock.NewAction{RequestID: id, Command: actCommand(kinds[i%len(kinds)], id), At: actAt, Online: i%2 == 0, Now: tsNow, Expires: actExp})
	}
	if len(s.Actions) != lock.MaxOpenActions {
		t.Fatalf("%d open actions, want %d", len(s.Actions), lock.MaxOpenActions)
	}
	e, ok, err := lock.DecideNewAction(s, lock.NewAction{RequestID: "r-new", Command: actCommand(lock.ActionOpenLock, "r-new"), At: actAt, Online: true, Now: tsNow, Expires: actExp})
	if domain.ErrorCode(err) != domain.TooMany || ok || e != nil {
		t.Fatalf("action %d = %v, %v, %v; want TooMany", lock.MaxOpenActions+1, e, ok, err)
	}
	if de := (*domain.Error)(nil); !errors.As(err, &de) || de.RetryAfter <= 0 {
		t.Errorf("TooMany error %#v has no RetryAfter", err)
	}
	// One finishing makes room again.
	s = lock.Apply(s, lock.DecideExpire(withActions(s.Actions[0]), actExp)[0])
	if _, ok, err := lock.DecideNewAction(s, lock.NewAction{RequestID: "r-new", Command: actCommand(lock.ActionOpenLock, "r-new"), At: actAt, Online: true, Now: tsNow, Expires: actExp}); err != nil || !ok {
		t.Errorf("after one expired: %v, %v; want a new action", ok, err)
	}
}

func TestActionDecideReport(t *testing.T) {
	const later = "2026-02-03T04:05:30.000Z"
	open := func(id, status string) lock.Action {
		return lock.Action{RequestID: id, Action: lock.ActionOpenLock, Status: status, At: actAt, ExpiresAt: actExpStamp}
	}
	write := func(id, status string) lock.Action {
		return lock.Action{RequestID: id, Action: lock.ActionWriteKey, Status: status, KeyUUID: "k0", At: actAt, ExpiresAt: actExpStamp}
	}
	add := func(id, key, status string) lock.Action {
		return lock.Action{RequestID: id, Action: lock.ActionAddKey, Status: status, KeyUUID: key, At: actAt, ExpiresAt: actExpStamp}
	}
	remove := func(id, key, status string) lock.Action {
		return lock.Action{RequestID: id, Action: lock.ActionRemoveKey, Status: status, KeyUUID: key, At: actAt, ExpiresAt: actExpStamp}
	}
	// to is a's transition to status: open ones keep ExpiresAt.
	to := func(a lock.Action, status, reason string) domain.Event {
		e := lock.LockActionUpdated{LockID: 7, UUID: devU, Timestamp: later, RequestID: a.RequestID, Action: a.Action,
			Status: status, KeyUUID: a.KeyUUID, At: a.At, Error: reason}
		if lock.Open(status) {
			e.ExpiresAt = a.ExpiresAt
		}
		return e
	}
	res := func(at int64, result, reason string) lock.Result {
		return lock.Result{At: at, Result: result, Error: reason}
	}
	held := map[string]lock.HeldKey{"k0": {At: actAt - 100, Index: idx(0)}, "k1": {At: actAt}}
	cases := []struct {
		name    string
		actions []lock.Action
		shadow  string // "" the classic shadow, else a key page
		rep     lock.Report
		fetched bool
		want    []domain.Event
	}{
		{name: "no actions", rep: lock.Report{Open: map[string]lock.Result{"o-1": res(actAt, "succeeded", "")}}, fetched: true},
		{name: "open succeeded", actions: []lock.Action{open("o-1", lock.StatusPending)},
			rep:  lock.Report{Open: map[string]lock.Result{"o-1": res(actAt, "succeeded", "")}},
			want: []domain.Event{to(open("o-1", ""), lock.StatusSucceeded, "")}},
		{name: "open failed from delivered, with the reason", actions: []lock.Action{open("o-1", lock.StatusDelivered)},
			rep:  lock.Report{Open: map[string]lock.Result{"o-1": res(actAt, "failed", "jammed")}},
			want: []domain.Event{to(open("o-1", ""), lock.StatusFailed, "jammed")}},
		{name: "open result of another at is an older request's", actions: []lock.Action{open("o-1", lock.StatusPending)},
			rep: lock.Report{Open: map[string]lock.Result{"o-1": res(actAt-1, "succeeded", "")}}},
		{name: "open result under writeKey answers nothing", actions: []lock.Action{open("o-1", lock.StatusQueued)},
			rep: lock.Report{WriteKey: map[string]lock.Result{"o-1": res(actAt, "succeeded", "")}}},
		{name: "writeKey succeeded", actions: []lock.Action{write("w-1", lock.StatusQueued)},
			rep:  lock.Report{WriteKey: map[string]lock.Result{"w-1": res(actAt, "succeeded", "")}},
			want: []domain.Event{to(write("w-1", ""), lock.StatusSucceeded, "")}},
		{name: "writeKey failed", actions: []lock.Action{write("w-1", lock.StatusDelivered)},
			rep:  lock.Report{WriteKey: map[string]lock.Result{"w-1": res(actAt, "failed", "no card")}},
			want: []domain.Event{to(write("w-1", ""), lock.StatusFailed, "no card")}},
		{name: "writeKey result of another at", actions: []lock.Action{write("w-1", lock.StatusDelivered)},
			rep: lock.Report{WriteKey: map[string]lock.Result{"w-1": res(actAt+1, "failed", "no card")}}},
		{name: "writeKey result under open answers nothing", actions: []lock.Action{write("w-1", lock.StatusDelivered)},
			rep: lock.Report{Open: map[string]lock.Result{"w-1": res(actAt, "succeeded", "")}}},
		{name: "addKey: the key with the action's at", actions: []lock.Action{add("a-1", "k1", lock.StatusPending)},
			shadow: lock.KeyPage("k1"), rep: lock.Report{Keys: held}, want: []domain.Event{to(add("a-1", "k1", ""), lock.StatusSucceeded, "")}},
		{name: "addKey: the key with an older at is not this request", actions: []lock.Action{add("a-1", "k0", lock.StatusDelivered)},
			shadow: lock.KeyPage("k0"), rep: lock.Report{Keys: held}},
		{name: "addKey: key absent", actions: []lock.Action{add("a-1", "k9", lock.StatusPending)}, shadow: lock.KeyPage("k9"), rep: lock.Report{Keys: held}},
		{name: "addKey: held, but reported by the classic shadow", actions: []lock.Action{add("a-1", "k1", lock.StatusPending)}, rep: lock.Report{Keys: held}},
		{name: "addKey: held, but reported by another page", actions: []lock.Action{add("a-1", "k1", lock.StatusPending)},
			shadow: lock.KeyPage("k0"), rep: lock.Report{Keys: held}},
		{name: "removeKey: key absent", actions: []lock.Action{remove("d-1", "k9", lock.StatusQueued)},
			shadow: lock.KeyPage("k9"), rep: lock.Report{Keys: held}, want: []domain.Event{to(remove("d-1", "k9", ""), lock.StatusSucceeded, "")}},
		{name: "removeKey: key still held", actions: []lock.Action{remove("d-1", "k0", lock.StatusDelivered)}, shadow: lock.KeyPage("k0"), rep: lock.Report{Keys: held}},
		{name: "removeKey: absent from another page's report", actions: []lock.Action{remove("d-1", "k9", lock.StatusDelivered)},
			shadow: lock.KeyPage("k0"), rep: lock.Report{Keys: held}},
		{name: "removeKey: absent from the classic shadow's report", actions: []lock.Action{remove("d-1", "k9", lock.StatusDelivered)}, rep: lock.Report{}},
		{name: "open result reported by a key page answers nothing", actions: []lock.Action{open("o-1", lock.StatusPending)}, fetched: true,
			shadow: lock.KeyPage("k0"), rep: lock.Report{Open: map[string]lock.Result{"o-1": res(actAt, "succeeded", "")}}},
		{name: "a get of the classic shadow delivers its pending and queued, not delivered nor key actions", fetched: true,
			actions: []lock.Action{open("o-1", lock.StatusPending), write("w-1", lock.StatusQueued), add("a-1", "k9", lock.StatusQueued),
				remove("d-1", "k0", lock.StatusPending), open("o-2", lock.StatusDelivered)},
			want: []domain.Event{to(open("o-1", ""), lock.StatusDelivered, ""), to(write("w-1", ""), lock.StatusDelivered, "")}},
		{name: "a get of a key page delivers that page's key actions only", fetched: true,
			actions: []lock.Action{open("o-1", lock.StatusPending), add("a-1", "k9", lock.StatusQueued), remove("d-1", "k0", lock.StatusPending),
				add("a-2", "k9", lock.StatusDelivered)},
			shadow: lock.KeyPage("k9"), rep: lock.Report{Keys: map[string]lock.HeldKey{"k9": {At: actAt - 1}}},
			want: []domain.Event{to(add("a-1", "k9", ""), lock.StatusDelivered, "")}},
		{name: "a get of a key page: removal done", fetched: true,
			actions: []lock.Action{remove("d-1", "k0", lock.StatusPending), remove("d-2", "k0", lock.StatusDelivered)},
			shadow:  lock.KeyPage("k0"), rep: lock.Report{},
			want: []domain.Event{to(remove("d-1", "k0", ""), lock.StatusSucceeded, ""), to(remove("d-2", "k0", ""), lock.StatusSucceeded, "")}},
		{name: "not fetched: nothing delivered", actions: []lock.Action{open("o-1", lock.StatusPending), write("w-1", lock.StatusQueued)}},
		{name: "fetched with a result: the result wins", fetched: true, actions: []lock.Action{open("o-1", lock.StatusQueued)},
			rep:  lock.Report{Open: map[string]lock.Result{"o-1": res(actAt, "succeeded", "")}},
			want: []domain.Event{to(open("o-1", ""), lock.StatusSucceeded, "")}},
		{name: "one report answers several", actions: []lock.Action{open("o-1", lock.StatusDelivered), open("o-2", lock.StatusDelivered),
			write("w-1", lock.StatusPending), add("a-1", "k1", lock.StatusPending), remove("d-1", "k0", lock.StatusPending)},
			rep: lock.Report{Keys: held, Open: map[string]lock.Result{"o-2": res(actAt, "failed", "")},
				WriteKey: map[string]lock.Result{"w-1": res(actAt, "succeeded", "")}},
			want: []domain.Event{to(open("o-2", ""), lock.StatusFailed, ""), to(write("w-1", ""), lock.StatusSucceeded, "")}},
		{name: "one page report answers several key actions", actions: []lock.Action{add("a-1", "k1", lock.StatusPending),
			add("a-2", "k1", lock.StatusDelivered), remove("d-1", "k1", lock.StatusQueued), open("o-1", lock.StatusPending)},
			shadow: lock.KeyPage("k1"), rep: lock.Report{Keys: held},
			want: []domain.Event{to(add("a-1", "k1", ""), lock.StatusSucceeded, ""), to(add("a-2", "k1", ""), lock.StatusSucceeded, "")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := withActions(tc.actions...)
			evs := lock.DecideReport(s, tc.shadow, tc.rep, tc.fetched, later)
			if d := cmp.Diff(tc.want, evs); d != "" {
				t.Fatalf("events (-want +got):\n%s", d)
			}
			// The same report again changes nothing more (no re-delivery).
			after := s
			for _, e := range evs {
				after = lock.Apply(after, e)
			}
			if again := lock.DecideReport(after, tc.shadow, tc.rep, tc.fetched, later); len(again) != 0 {
				t.Errorf("the same report again: %v", again)
			}
			if after.UpdatedAt != s.UpdatedAt {
				t.Errorf("UpdatedAt %s, want %s unchanged", after.UpdatedAt, s.UpdatedAt)
			}
		})
	}
}

func TestActionDecideExpire(t *testing.T) {
	a1 := lock.Action{RequestID: "o-1", Action: lock.ActionOpenLock, Status: lock.StatusDelivered, At: actAt, ExpiresAt: "2026-02-03T04:06:00.000Z"}
	a2 := lock.Action{RequestID: "a-1", Action: lock.ActionAddKey, Status: lock.StatusQueued, KeyUUID: "k9", At: actAt, ExpiresAt: "2026-02-03T04:07:00.000Z"}
	s := withActions(a1, a2)
	expired := func(a lock.Action, now string) domain.Event {
		return lock.LockActionUpdated{LockID: 7, UUID: devU, Timestamp: now, RequestID: a.RequestID, Action: a.Action,
			Status: lock.StatusExpired, KeyUUID: a.KeyUUID, At: a.At}
	}
	t0 := time.Date(2026, 2, 3, 4, 6, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		now  time.Time
		want []domain.Event
	}{
		{"a millisecond before", t0.Add(-time.Millisecond), nil},
		{"exactly at ExpiresAt", t0, []domain.Event{expired(a1, "2026-02-03T04:06:00.000Z")}},
		{"just after, in another zone", t0.Add(time.Second).In(time.FixedZone("X", -5*3600)), []domain.Event{expired(a1, "2026-02-03T04:06:01.000Z")}},
		{"after both", t0.Add(time.Hour), []domain.Event{expired(a1, "2026-02-03T05:06:00.000Z"), expired(a2, "2026-02-03T05:06:00.000Z")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs := lock.DecideExpire(s, tc.now)
			if d := cmp.Diff(tc.want, evs); d != "" {
				t.Errorf("events (-want +got):\n%s", d)
			}
		})
	}
	after := s
	for _, e := range lock.DecideExpire(s, t0.Add(time.Hour)) {
		after = lock.Apply(after, e)
	}
	if after.Actions != nil {
		t.Errorf("actions after expiry: %+v", after.Actions)
	}
	if evs := lock.DecideExpire(after, t0.Add(time.Hour)); len(evs) != 0 {
		t.Errorf("expiring again: %v", evs)
	}
}

func TestActionNextExpiry(t *testing.T) {
	if next, ok := seeded().NextExpiry(); ok {
		t.Errorf("NextExpiry without actions = %v, true", next)
	}
	s := withActions(
		lock.Action{RequestID: "a", Action: lock.ActionAddKey, Status: lock.StatusQueued, At: actAt, ExpiresAt: "2026-02-04T00:00:00.000Z"},
		lock.Action{RequestID: "b", Action: lock.ActionOpenLock, Status: lock.StatusPending, At: actAt, ExpiresAt: "2026-02-03T04:06:00.500Z"},
		lock.Action{RequestID: "c", Action: lock.ActionWriteKey, Status: lock.StatusDelivered, At: actAt, ExpiresAt: "2026-02-03T05:00:00.000Z"},
	)
	next, ok := s.NextExpiry()
	if want := time.Date(2026, 2, 3, 4, 6, 0, 500_000_000, time.UTC); !ok || !next.Equal(want) {
		t.Errorf("NextExpiry = %v, %v; want %v", next, ok, want)
	}
}

func TestActionKindOf(t *testing.T) {
	for action, want := range map[string]string{lock.ActionOpenLock: lock.KindOpen, lock.ActionWriteKey: lock.KindWriteKey, lock.ActionAddKey: "", lock.ActionRemoveKey: "", "": ""} {
		got, ok := lock.KindOf(action)
		if got != want || ok != (want != "") {
			t.Errorf("KindOf(%q) = %q, %v; want %q", action, got, ok, want)
		}
	}
}

func TestActionShadowOf(t *testing.T) {
	for _, tc := range []struct {
		a    lock.Action
		want string
	}{
		{lock.Action{Action: lock.ActionAddKey, KeyUUID: "k9"}, lock.KeyPage("k9")},
		{lock.Action{Action: lock.ActionRemoveKey, KeyUUID: "k1"}, lock.KeyPage("k1")},
		{lock.Action{Action: lock.ActionWriteKey, KeyUUID: "k1"}, ""},
		{lock.Action{Action: lock.ActionOpenLock}, ""},
	} {
		if got := lock.ShadowOf(tc.a); got != tc.want {
			t.Errorf("ShadowOf(%+v) = %q, want %q", tc.a, got, tc.want)
		}
		if tc.want != "" && !lock.IsKeyPage(tc.want) {
			t.Errorf("ShadowOf(%+v) = %q, not a key page", tc.a, tc.want)
		}
	}
}

func TestApplyActionUpdated(t *testing.T) {
	s := seeded()
	created := s.UpdatedAt
	ev := func(id, action, status string) lock.LockActionUpdated {
		e := lock.LockActionUpdated{LockID: 7, UUID: devU, Timestamp: tsNow, RequestID: id, Action: action, Status: status, At: actAt}
		if lock.Open(status) {
			e.ExpiresAt = actExpStamp
		}
		return e
	}
	act := func(id, action, status string) lock.Action {
		return lock.Action{RequestID: id, Action: action, Status: status, At: actAt, ExpiresAt: actExpStamp}
	}
	steps := []struct {
		e    lock.LockActionUpdated
		want []lock.Action
	}{
		{ev("o-1", lock.ActionOpenLock, lock.StatusPending), []lock.Action{act("o-1", lock.ActionOpenLock, lock.StatusPending)}},
		{ev("w-1", lock.ActionWriteKey, lock.StatusQueued), []lock.Action{act("o-1", lock.ActionOpenLock, lock.StatusPending), act("w-1", lock.ActionWriteKey, lock.StatusQueued)}},
		{ev("o-1", lock.ActionOpenLock, lock.StatusDelivered), []lock.Action{act("w-1", lock.ActionWriteKey, lock.StatusQueued), act("o-1", lock.ActionOpenLock, lock.StatusDelivered)}},
		{ev("w-1", lock.ActionWriteKey, lock.StatusFailed), []lock.Action{act("o-1", lock.ActionOpenLock, lock.StatusDelivered)}},
		{ev("x-1", lock.ActionOpenLock, lock.StatusExpired), []lock.Action{act("o-1", lock.ActionOpenLock, lock.StatusDelivered)}},
		{ev("o-1", lock.ActionOpenLock, lock.StatusSucceeded), nil},
	}
	for i, st := range steps {
		s = lock.Apply(s, st.e)
		if d := cmp.Diff(st.want, s.Actions); d != "" {
			t.Fatalf("step %d (%s %s): actions (-want +got):\n%s", i, st.e.RequestID, st.e.Status, d)
		}
		if s.UpdatedAt != created {
			t.Fatalf("step %d: UpdatedAt %s, want %s (an action is not a change of the lock)", i, s.UpdatedAt, created)
		}
		if len(s.Keys) != 5 {
			t.Fatalf("step %d: keys changed: %+v", i, s.Keys)
		}
	}
}

// TestActionSequences: random requests, reports and expiries never leave
// more than MaxOpenActions open actions, a finished action leaves
// State.Actions, each requestId is open at most once, and every decided
// transition moves an open action along the lifecycle.
func TestActionSequences(t *testing.T) {
	kinds := []string{lock.ActionOpenLock, lock.ActionAddKey, lock.ActionRemoveKey, lock.ActionWriteKey}
	keyOf := map[string]string{lock.ActionAddKey: "k9", lock.ActionRemoveKey: "k1", lock.ActionWriteKey: "k0"}
	var bound, conflicts, reports, expiries int // how often the sequences hit each case
	rapid.Check(t, func(t *rapid.T) {
		s := seeded()
		now := actNow
		finished := map[string]string{} // requestId → last finished status, until reopened
		apply := func(evs []domain.Event, from string) {
			for _, e := range evs {
				v, ok := e.(lock.LockActionUpdated)
				if !ok {
					t.Fatalf("%s: event %T", from, e)
				}
				prev, open := s.OpenAction(v.RequestID)
				switch {
				case !open:
					t.Fatalf("%s: transition %s of %s, which is not open", from, v.Status, v.RequestID)
				case v.Status == prev.Status:
					t.Fatalf("%s: %s stays %s", from, v.RequestID, v.Status)
				case v.Status == lock.StatusPending || v.Status == lock.StatusQueued:
					t.Fatalf("%s: %s goes back to %s", from, v.RequestID, v.Status)
				case v.Action != prev.Action || v.At != prev.At || v.KeyUUID != prev.KeyUUID:
					t.Fatalf("%s: transition %+v does not match the action %+v", from, v, prev)
				}
				s = lock.Apply(s, v)
				if !lock.Open(v.Status) {
					finished[v.RequestID] = v.Status
				}
			}
		}
		request := func(stamp string) {
			id := fmt.Sprintf("r-%d", rapid.IntRange(0, 2*lock.MaxOpenActions).Draw(t, "requestId"))
			kind := rapid.SampledFrom(kinds).Draw(t, "kind")
			ttl := time.Duration(rapid.IntRange(0, 600).Draw(t, "ttl")) * time.Second
			e, ok, err := lock.DecideNewAction(s, lock.NewAction{RequestID: id, Command: actCommand(kind, id), At: now.Unix(),
				Online: rapid.Bool().Draw(t, "online"), Now: stamp, Expires: now.Add(ttl)})
			_, isOpen := s.OpenAction(id)
			switch {
			case isOpen:
				if domain.ErrorCode(err) != domain.Conflict {
					t.Fatalf("request %s while open: %v, %v, %v; want Conflict", id, e, ok, err)
				}
				conflicts++
			case len(s.Actions) >= lock.MaxOpenActions:
				if domain.ErrorCode(err) != domain.TooMany {
					t.Fatalf("request %s with %d open: %v, %v, %v; want TooMany", id, len(s.Actions), e, ok, err)
				}
				bound++
			case err != nil || !ok:
				t.Fatalf("request %s: %v, %v, %v", id, e, ok, err)
			default:
				s = lock.Apply(s, e)
				delete(finished, id)
			}
		}
		steps := rapid.IntRange(1, 300).Draw(t, "steps")
		for range steps {
			now = now.Add(time.Duration(rapid.IntRange(0, 20).Draw(t, "tick")) * time.Second)
			stamp := now.Format(domain.TimeLayout)
			switch rapid.IntRange(0, 9).Draw(t, "op") {
			case 0, 1, 2, 3: // a new request
				request(stamp)
			case 4, 5: // a burst of requests, so that the bound is reached
				for range rapid.IntRange(1, lock.MaxOpenActions+8).Draw(t, "burst") {
					request(stamp)
				}
			case 6, 7, 8: // a report answering some of the open actions
				rep := lock.Report{Keys: map[string]lock.HeldKey{}, Open: map[string]lock.Result{}, WriteKey: map[string]lock.Result{}}
				for _, a := range s.Actions {
					at := a.At
					if rapid.Bool().Draw(t, "otherAt") {
						at++
					}
					if !rapid.Bool().Draw(t, "answer") {
						continue
					}
					r := lock.Result{At: at, Result: rapid.SampledFrom([]string{"succeeded", "failed"}).Draw(t, "result")}
					switch a.Action {
					case lock.ActionOpenLock:
						rep.Open[a.RequestID] = r
					case lock.ActionWriteKey:
						rep.WriteKey[a.RequestID] = r
					case lock.ActionAddKey:
						rep.Keys[a.KeyUUID] = lock.HeldKey{At: at}
					}
				}
				if rapid.Bool().Draw(t, "holdsK1") {
					rep.Keys[keyOf[lock.ActionRemoveKey]] = lock.HeldKey{At: 1}
				}
				shadow := rapid.SampledFrom([]string{"", lock.KeyPage("k9"), lock.KeyPage("k1")}).Draw(t, "shadow")
				evs := lock.DecideReport(s, shadow, rep, rapid.Bool().Draw(t, "fetched"), stamp)
				for _, e := range evs {
					if a, ok := s.OpenAction(e.(lock.LockActionUpdated).RequestID); ok && lock.ShadowOf(a) != shadow {
						t.Fatalf("a report of shadow %q moved %+v, which shadow %q answers", shadow, a, lock.ShadowOf(a))
					}
				}
				reports += len(evs)
				apply(evs, "report")
			case 9:
				evs := lock.DecideExpire(s, now)
				expiries += len(evs)
				apply(evs, "expire")
				if next, ok := s.NextExpiry(); ok && !next.After(now) {
					t.Fatalf("after expiring at %v an action still expires at %v", now, next)
				}
			}
			if len(s.Actions) > lock.MaxOpenActions {
				t.Fatalf("%d open actions, at most %d", len(s.Actions), lock.MaxOpenActions)
			}
			seen := map[string]bool{}
			for _, a := range s.Actions {
				if !lock.Open(a.Status) {
					t.Fatalf("finished action in the state: %+v", a)
				}
				if seen[a.RequestID] {
					t.Fatalf("requestId %s open twice", a.RequestID)
				}
				seen[a.RequestID] = true
				if _, done := finished[a.RequestID]; done {
					t.Fatalf("finished action %s still in the state", a.RequestID)
				}
			}
		}
	})
	t.Logf("TooMany %d, Conflict %d, report transitions %d, expiries %d", bound, conflicts, reports, expiries)
	if bound == 0 || conflicts == 0 || reports == 0 || expiries == 0 {
		t.Errorf("the sequences missed a case: TooMany %d, Conflict %d, report transitions %d, expiries %d", bound, conflicts, reports, expiries)
	}
}
