package devices_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/domain/shadow"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// TestUpdateDesiredRefused: a desired state the shadow rules refuse is an
// error carrying the *shadow.Error; the caller's transaction stores
// nothing of it, and a named shadow's desired state is set apart from the
// classic one.
func TestUpdateDesiredRefused(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			e := newEnv(t, b)
			for _, c := range []struct {
				name    string
				desired string
				want    shadow.Error
			}{
				{"not an object", `"open"`, shadow.Error{Code: 400, Message: shadow.MsgDesiredNotObject, Timestamp: testNow.Unix(), ClientToken: "c"}},
				{"not JSON", `{"lock":`, shadow.Error{Code: 400, Message: shadow.MsgInvalidJSON, Timestamp: testNow.Unix(), ClientToken: "c"}},
				{"state too large", `{"blob":"` + strings.Repeat("x", 9000) + `"}`, shadow.Error{Code: 413, Message: shadow.MsgTooLarge, Timestamp: testNow.Unix(), ClientToken: "c"}},
			} {
				err := e.st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
					_, err := e.gw.UpdateDesired(ctx, tx, "thing-7", "", json.RawMessage(c.desired), "c", testNow.Unix())
					return err
				})
				var rerr *shadow.Error
				if !errors.As(err, &rerr) {
					t.Fatalf("%s: error %v, want a *shadow.Error", c.name, err)
				}
				if diff := cmp.Diff(c.want, *rerr); diff != "" {
					t.Errorf("%s (-want +got):\n%s", c.name, diff)
				}
			}
			if _, found := storedShadow(t, e.st, "thing-7", ""); found {
				t.Error("a refused desired state was stored")
			}
			if command, _ := logged(t, e.st, "thing-7"); len(command) != 0 {
				t.Errorf("refused commands logged: %v", command)
			}

			// A named shadow: versions of its own, the classic one untouched.
			err := e.st.Write(ctx, func(ctx context.Context, tx *store.Tx) error {
				_, err := e.gw.UpdateDesired(ctx, tx, "thing-7", "keys", json.RawMessage(`{"slot1":"abc"}`), "", testNow.Unix())
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			named, _ := storedShadow(t, e.st, "thing-7", "keys")
			if named.Version != 1 || named.Desired["slot1"] != "abc" {
				t.Errorf("named shadow: %+v", named)
			}
			if _, found := storedShadow(t, e.st, "thing-7", ""); found {
				t.Error("the classic shadow was created")
			}
		})
	}
}
