package doorbell_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/doorbell"
	"github.com/spkey-dev/spkey/internal/domain/lock"
)

const (
	now   = "2026-01-02T03:04:05.678Z"
	ann   = "8d0f6e52-3b1a-4c9d-9e7f-0a1b2c3d4e5f"
	bob   = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
	carol = "99999999-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
	ring  = "7e57d004-4a1b-4c2d-9e3f-5a6b7c8d9e0f"
)

func lockWith(residents ...lock.Resident) lock.State {
	return lock.State{LockID: 7, UUID: "6f1c2e9a-0b3d-4c5e-8f7a-9b0c1d2e3f40", OrgID: "acme", Residents: residents}
}

func TestDecideRing(t *testing.T) {
	two := lockWith(lock.Resident{UserID: ann, Name: "Ann"}, lock.Resident{UserID: bob, Name: "Bob"})
	for _, c := range []struct {
		name    string
		l       lock.State
		cmd     doorbell.Ring
		targets []doorbell.Target
		source  string
		code    domain.Code
		field   string
	}{
		{name: "everybody", l: two, cmd: doorbell.Ring{}, targets: []doorbell.Target{{ann, "Ann"}, {bob, "Bob"}}, source: "api"},
		{name: "one resident", l: two, cmd: doorbell.Ring{ResidentUserID: bob, Source: "panel"}, targets: []doorbell.Target{{bob, "Bob"}}, source: "panel"},
		{name: "no residents still rings", l: lockWith(), cmd: doorbell.Ring{}, targets: []doorbell.Target{}, source: "api"},
		{name: "not a resident", l: two, cmd: doorbell.Ring{ResidentUserID: carol}, code: domain.Invalid, field: "residentUserId"},
		{name: "missing lock", l: lock.State{}, cmd: doorbell.Ring{}, code: domain.NotFound},
		{name: "message of 281 characters", l: two, cmd: doorbell.Ring{Message: strings.Repeat("é", 281)}, code: domain.Invalid, field: "message"},
		{name: "message of 280 characters", l: two, cmd: doorbell.Ring{Message: strings.Repeat("é", 280)}, targets: []doorbell.Target{{ann, "Ann"}, {bob, "Bob"}}, source: "api"},
		{name: "long visitor name", l: two, cmd: doorbell.Ring{VisitorName: strings.Repeat("x", 81)}, code: domain.Invalid, field: "visitorName"},
		{name: "bad source", l: two, cmd: doorbell.Ring{Source: "Front Door"}, code: domain.Invalid, field: "source"},
		{name: "invalid UTF-8", l: two, cmd: doorbell.Ring{Message: "\xff"}, code: domain.Invalid, field: "message"},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.cmd.RingID, c.cmd.Now = ring, now
			evs, err := doorbell.DecideRing(c.l, c.cmd)
			if c.code != "" {
				var de *domain.Error
				if domain.ErrorCode(err) != c.code || len(evs) != 0 {
					t.Fatalf("got %v %v, want %s", evs, err, c.code)
				}
				if c.field != "" && (!errors.As(err, &de) || len(de.Details) != 1 || de.Details[0].Field != c.field) {
					t.Fatalf("error %v does not name %s", err, c.field)
				}
				return
			}
			if err != nil || len(evs) != 1 {
				t.Fatalf("got %v %v", evs, err)
			}
			got := evs[0].(doorbell.DoorbellRang)
			want := doorbell.DoorbellRang{RingID: ring, LockID: 7, UUID: c.l.UUID, OrgID: "acme", Timestamp: now, Residents: c.targets,
				Source: c.source, Message: c.cmd.Message, VisitorName: c.cmd.VisitorName}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("event (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAnswerAndDecline walks a ring through its life: declines, the first
// answer, then every late response refused with the right code.
func TestAnswerAndDecline(t *testing.T) {
	evs, err := doorbell.DecideRing(lockWith(lock.Resident{UserID: ann, Name: "Ann"}, lock.Resident{UserID: bob, Name: "Bob"}, lock.Resident{UserID: carol, Name: "Carol"}),
		doorbell.Ring{RingID: ring, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	s := doorbell.Apply(doorbell.State{}, evs[0])
	step := func(decide func(doorbell.State, string, string) ([]domain.Event, error), user string, code domain.Code) {
		t.Helper()
		evs, err := decide(s, user, now)
		if code != "" {
			if domain.ErrorCode(err) != code || len(evs) != 0 {
				t.Fatalf("%s: got %v %v, want %s", user, evs, err, code)
			}
			return
		}
		if err != nil || len(evs) != 1 {
			t.Fatalf("%s: got %v %v", user, evs, err)
		}
		s = doorbell.Apply(s, evs[0])
	}
	step(doorbell.DecideAnswer, "00000000-5e6f-4a7b-8c9d-0e1f2a3b4c5d", domain.Forbidden)
	step(doorbell.DecideDecline, bob, "")
	step(doorbell.DecideDecline, bob, domain.Conflict)
	step(doorbell.DecideAnswer, bob, domain.Conflict)
	if s.Status != doorbell.StatusRinging {
		t.Fatalf("status after one decline: %s", s.Status)
	}
	step(doorbell.DecideAnswer, ann, "")
	if s.Status != doorbell.StatusAnswered || s.AnsweredBy != ann || s.AnsweredAt != now {
		t.Fatalf("after the answer: %+v", s)
	}
	step(doorbell.DecideAnswer, carol, domain.Conflict)
	step(doorbell.DecideDecline, carol, domain.Conflict)
	step(doorbell.DecideAnswer, ann, domain.Conflict)
	if _, err := doorbell.DecideAnswer(doorbell.State{}, ann, now); domain.ErrorCode(err) != domain.NotFound {
		t.Fatalf("unknown ring: %v", err)
	}

	// Everybody declines: the ring is declined, and nobody can answer.
	s = doorbell.Apply(doorbell.State{}, evs[0])
	for _, u := range []string{ann, bob, carol} {
		step(doorbell.DecideDecline, u, "")
	}
	if s.Status != doorbell.StatusDeclined {
		t.Fatalf("status after three declines: %s", s.Status)
	}
	step(doorbell.DecideAnswer, ann, domain.Conflict)
}
