package user_test

import (
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/user"
)

func TestQuietHoursContains(t *testing.T) {
	at := func(hhmm string) time.Time {
		tm, err := time.Parse("15:04", hhmm)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	night := user.QuietHours{Start: "22:00", End: "07:00", TimeZone: "UTC"}
	lunch := user.QuietHours{Start: "12:00", End: "13:30", TimeZone: "UTC"}
	for _, c := range []struct {
		q    user.QuietHours
		at   string
		want bool
	}{
		{night, "21:59", false}, {night, "22:00", true}, {night, "23:59", true}, {night, "00:00", true},
		{night, "06:59", true}, {night, "07:00", false}, {night, "12:00", false},
		{lunch, "11:59", false}, {lunch, "12:00", true}, {lunch, "13:29", true}, {lunch, "13:30", false}, {lunch, "00:00", false},
	} {
		if got := c.q.Contains(at(c.at)); got != c.want {
			t.Errorf("%s-%s at %s: %v, want %v", c.q.Start, c.q.End, c.at, got, c.want)
		}
	}
}

func TestDecideSetPreferences(t *testing.T) {
	u := user.Apply(user.State{}, user.UserCreated{UserID: "8d0f6e52-3b1a-4c9d-9e7f-0a1b2c3d4e5f", Status: user.StatusActive})
	if u.Prefs() != user.DefaultPreferences() {
		t.Fatalf("defaults: %+v", u.Prefs())
	}
	if evs, err := user.DecideSetPreferences(u, user.DefaultPreferences(), "t"); err != nil || len(evs) != 0 {
		t.Fatalf("setting the defaults records %v %v", evs, err)
	}
	p := user.Preferences{Live: true, QuietHours: &user.QuietHours{Start: "22:00", End: "07:00", TimeZone: "Europe/Warsaw"}}
	evs, err := user.DecideSetPreferences(u, p, "t")
	if err != nil || len(evs) != 1 {
		t.Fatalf("%v %v", evs, err)
	}
	u = user.Apply(u, evs[0])
	if got := u.Prefs(); got.Email || got.Hook || !got.Live || got.QuietHours == nil || *got.QuietHours != *p.QuietHours {
		t.Fatalf("after: %+v", got)
	}
	// The state keeps its own copy of the quiet hours.
	p.QuietHours.Start = "01:00"
	if u.Prefs().QuietHours.Start != "22:00" {
		t.Fatal("state shares the event's quiet hours")
	}
	for _, bad := range []user.QuietHours{{Start: "24:00", End: "07:00", TimeZone: "UTC"}, {Start: "22:00", End: "7:00", TimeZone: "UTC"},
		{Start: "22:00", End: "22:00", TimeZone: "UTC"}, {Start: "22:00", End: "07:00"}} {
		if _, err := user.DecideSetPreferences(u, user.Preferences{QuietHours: &bad}, "t"); domain.ErrorCode(err) != domain.Invalid {
			t.Errorf("%+v: %v, want invalid", bad, err)
		}
	}
	if _, err := user.DecideSetPreferences(user.State{}, p, "t"); domain.ErrorCode(err) != domain.NotFound {
		t.Errorf("missing user: %v", err)
	}
}
