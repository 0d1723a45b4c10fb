package shadow_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/domain/shadow"
)

func TestParseTopic(t *testing.T) {
	type parsed struct {
		Thing, Shadow, Op string
		OK                bool
	}
	long := strings.Repeat("a", 128)
	for _, c := range []struct {
		topic string
		want  parsed
	}{
		{"$aws/things/lock-7/shadow/update", parsed{"lock-7", "", "update", true}},
		{"$aws/things/lock-7/shadow/get", parsed{"lock-7", "", "get", true}},
		{"$aws/things/lock-7/shadow/delete", parsed{"lock-7", "", "delete", true}},
		{"$aws/things/Lock_7:a/shadow/name/door-1/update", parsed{"Lock_7:a", "door-1", "update", true}},
		{"$aws/things/" + long + "/shadow/name/" + strings.Repeat("b", 64) + "/get", parsed{long, strings.Repeat("b", 64), "get", true}},
		{"$aws/things/" + long + "a/shadow/get", parsed{}},
		{"$aws/things/t/shadow/name/" + strings.Repeat("b", 65) + "/get", parsed{}},
		{"$aws/things/lock-7/shadow/update/accepted", parsed{}},
		{"$aws/things/lock-7/shadow/name/door/update/delta", parsed{}},
		{"$aws/things/lock-7/shadow/list", parsed{}},
		{"$aws/things//shadow/update", parsed{}},
		{"$aws/things/lock 7/shadow/update", parsed{}},
		{"$aws/things/lock.7/shadow/update", parsed{}},
		{"$aws/things/lock-7/shadow/name//update", parsed{}},
		{"$aws/things/lock-7/shadow/nom/door/update", parsed{}},
		{"$aws/things/lock-7/shadow/name/do+or/update", parsed{}},
		{"$aws/things/lock-7/jobs/get", parsed{}},
		{"aws/things/lock-7/shadow/update", parsed{}},
		{"", parsed{}},
	} {
		t.Run(c.topic, func(t *testing.T) {
			thing, name, op, ok := shadow.ParseTopic(c.topic)
			if diff := cmp.Diff(c.want, parsed{thing, name, op, ok}); diff != "" {
				t.Errorf("ParseTopic (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTopic(t *testing.T) {
	for _, c := range []struct {
		thing, name, op, suffix, want string
	}{
		{"lock-7", "", "update", "", "$aws/things/lock-7/shadow/update"},
		{"lock-7", "", "update", "accepted", "$aws/things/lock-7/shadow/update/accepted"},
		{"lock-7", "", "update", "delta", "$aws/things/lock-7/shadow/update/delta"},
		{"lock-7", "", "update", "documents", "$aws/things/lock-7/shadow/update/documents"},
		{"lock-7", "door", "get", "rejected", "$aws/things/lock-7/shadow/name/door/get/rejected"},
		{"lock-7", "door", "delete", "accepted", "$aws/things/lock-7/shadow/name/door/delete/accepted"},
	} {
		t.Run(c.want, func(t *testing.T) {
			got := shadow.Topic(c.thing, c.name, c.op, c.suffix)
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("Topic (-want +got):\n%s", diff)
			}
			if c.suffix != "" {
				return
			}
			thing, name, op, ok := shadow.ParseTopic(got)
			if diff := cmp.Diff([]any{c.thing, c.name, c.op, true}, []any{thing, name, op, ok}); diff != "" {
				t.Errorf("ParseTopic(Topic(...)) (-want +got):\n%s", diff)
			}
		})
	}
}
