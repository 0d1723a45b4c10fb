package httpapi_test

import (
	"context"
	"encoding/json"
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

// TestStreamLimitPerKey: one credential cannot take the node's streams by
// streaming many users. A tenant's key streaming three of its users (each
// far under the per-user cap) is refused the fourth stream with 429,
// Retry-After and the envelope, counted under limit="key"; a user's own
// token still gets a stream, and closing one of the key's streams lets
// the key in again.
func TestStreamLimitPerKey(t *testing.T) {
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			srv := testenv.NewServer(t, b, testenv.Options{MaxStreams: 10, MaxStreamsPerKey: 3})
			key, alice, bob, aliceJWT, _ := doorbellSetup(t, srv)
			carol, _ := wireOK(t, srv, wireReq{Method: "GET", Path: "/users/by-email?email=carol@example.com", Key: key}, http.StatusOK)["uuid"].(string)
			wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/7/AddResident", Key: key, Body: map[string]any{"name": "Carol", "email": "carol@example.com"}}, http.StatusOK)

			first := openStream(t, srv, alice, "", key, "")
			openStream(t, srv, bob, "", key, "")
			openStream(t, srv, carol, "", key, "")
			for _, user := range []string{alice, bob} {
				status, retry, body := getStreamAnswer(t, srv, user, key)
				msg, _ := body["message"].(string)
				delete(body, "message")
				if diff := cmp.Diff(map[string]any{"error": "Too Many Requests", "code": float64(429), "details": []any{}}, body); status != http.StatusTooManyRequests || retry != "10" || diff != "" ||
					!strings.Contains(msg, "at most 3 may be open with one credential") {
					t.Fatalf("4th stream of one key: %d, Retry-After %q, body (-want +got):\n%s\nmessage %q", status, retry, diff, msg)
				}
			}
			// Another credential is not held by the key's cap.
			own := openStream(t, srv, alice, aliceJWT, "", "")
			waitMetric(t, srv, "spkey_live_streams", "", 4)
			text := scrapeMetrics(t, srv, "")
			for labels, want := range map[string]float64{`limit="key"`: 2, `limit="user"`: -1, `limit="node"`: -1} {
				if got := metricValue(text, "spkey_live_stream_refusals_total", labels); got != want {
					t.Errorf("spkey_live_stream_refusals_total{%s} = %v, want %v", labels, got, want)
				}
			}

			first.Close()
			waitMetric(t, srv, "spkey_live_streams", "", 3)
			again := openStream(t, srv, bob, "", key, "")
			wireOK(t, srv, wireReq{Method: "POST", Path: "/locks/7/RingDoorbell", Key: key, Body: map[string]any{"visitorName": "Courier"}}, http.StatusOK)
			for name, s := range map[string]*testenv.Stream{"the key's stream let in after a close": again, "Alice's own stream": own} {
				if ev := s.Next(t, 10*time.Second); ev.Event != "DoorbellRang" {
					t.Errorf("%s got %+v", name, ev)
				}
			}
		})
	}
}

// getStreamAnswer asks for a stream of user's feed with the tenant key and
// returns the answer's status, Retry-After and JSON body; a stream that
// opens (200) is closed at once instead of read to its end.
func getStreamAnswer(t *testing.T, srv *testenv.Server, user, key string) (int, string, map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/users/"+user+"/notifications/stream", nil)
	req.Header.Set("X-API-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body := map[string]any{}
	if resp.StatusCode != http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatalf("%d answer: %v", resp.StatusCode, err)
		}
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), body
}
