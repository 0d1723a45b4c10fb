package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/testenv"
)

// waitMetric waits until the series name{labels} of srv's metrics has
// value want, failing the test after 10 s.
func waitMetric(t *testing.T, srv *testenv.Server, name, labels string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		text := scrapeMetrics(t, srv, "")
		got := metricValue(text, name, labels)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s{%s} = %v, want %v", name, labels, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStreamLimits: live streams are bounded per caller and user and per
// node. Beyond either cap a stream is refused with 429, Retry-After and
// the error envelope, and counted; one user's cap does not touch another
// user, nor the same user's streams under another credential; closing a
// stream lets a new one in.
func TestStreamLimits(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			srv := testenv.NewServer(t, b, testenv.Options{MaxStreamsPerUser: 2, MaxStreams: 4})
			key, alice, bob, aliceJWT, bobJWT := doorbellSetup(t, srv)
			path := func(user string) string { return "/users/" + user + "/notifications/stream" }
			refused := func(r wireReq, limit string) {
				t.Helper()
				resp := wireDo(t, srv, r)
				if resp.Status != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "10" {
					t.Fatalf("%s over the %s cap: %d, Retry-After %q, %s", r.Path, limit, resp.Status, resp.Header.Get("Retry-After"), resp.Raw)
				}
				body := resp.Obj(t)
				msg, _ := body["message"].(string)
				delete(body, "message")
				if diff := cmp.Diff(map[string]any{"error": "Too Many Requests", "code": float64(429), "details": []any{}}, body); diff != "" || !strings.Contains(msg, "Too many live streams") {
					t.Errorf("refusal body (-want +got):\n%s\nmessage %q", diff, msg)
				}
			}

			a1 := openStream(t, srv, alice, aliceJWT, "", "")
			openStream(t, srv, alice, aliceJWT, "", "")
			refused(wireReq{Method: "GET", Path: path(alice), JWT: aliceJWT}, "user")
			refused(wireReq{Method: "GET", Path: path(alice) + "?access_token=" + aliceJWT}, "user")
			// Another user, and the same user under the tenant's key, are
			// not held by Alice's cap.
			openStream(t, srv, bob, bobJWT, "", "")
			openStream(t, srv, alice, "", key, "")
			waitMetric(t, srv, "spkey_live_streams", "", 4)
			// The node is full: Bob, under his own cap, is refused too.
			refused(wireReq{Method: "GET", Path: path(bob), JWT: bobJWT}, "node")
			text := scrapeMetrics(t, srv, "")
			for labels, want := range map[string]float64{`limit="user"`: 2, `limit="node"`: 1} {
				if got := metricValue(text, "spkey_live_stream_refusals_total", labels); got != want {
					t.Errorf("spkey_live_stream_refusals_total{%s} = %v, want %v", labels, got, want)
				}
			}
			if got := metricValue(text, "spkey_live_streams", ""); got != 4 {
				t.Errorf("refusals left streams counted: spkey_live_streams = %v, want 4", got)
			}

			// Closing one of Alice's streams frees its slot (once the
			// server has seen the client go), and she gets in again.
			a1.Close()
			waitMetric(t, srv, "spkey_live_streams", "", 3)
			again := openStream(t, srv, alice, aliceJWT, "", "")
			wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/7/RingDoorbell", Key: key, Body: map[string]any{"visitorName": "Courier"}}, http.StatusOK)
			if ev := again.Next(t, 10*time.Second); ev.Event != "DoorbellRang" {
				t.Errorf("the stream let in after a close got %+v", ev)
			}
			refused(wireReq{Method: "GET", Path: path(alice), JWT: aliceJWT}, "user")
		})
	}
}
