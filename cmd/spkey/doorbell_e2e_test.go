package main

import (
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/testenv"
)

// hookSecret is the notify hook's secret in these tests (whsec_ + base64).
var hookKey = []byte("e2e-doorbell-hook-key")

var hookSecret = "whsec_" + base64.StdEncoding.EncodeToString(hookKey)

// hookReceiver is the operator's endpoint behind SPKEY_NOTIFY_HOOK_URL: it
// checks each request's Standard Webhooks signature and counts requests
// per webhook-id. While holding, requests wait (unanswered) until release
// or until the caller goes away.
type hookReceiver struct {
	*httptest.Server
	mu       sync.Mutex
	arrived  map[string]int // webhook-id → requests received
	answered map[string]int // webhook-id → 2xx answers written
	bad      []string       // requests that broke the contract
	inFlight chan string    // webhook-ids of held requests
	requestGate
}

func newHookReceiver(t *testing.T) *hookReceiver {
	h := &hookReceiver{arrived: map[string]int{}, answered: map[string]int{}, inFlight: make(chan string, 64)}
	h.Server = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(func() { h.release(); h.Close() })
	return h
}

func (h *hookReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
	wh, whErr := standardwebhooks.NewWebhook(hookSecret)
	unix, tsErr := strconv.ParseInt(ts, 10, 64)
	want, signErr := wh.Sign(id, time.Unix(unix, 0), body)
	var p struct {
		ID       string `json:"id"`
		Type     string `json:"type"`
		RingID   string `json:"ringId"`
		Resident struct {
			UserID string `json:"userId"`
		} `json:"resident"`
	}
	_ = json.Unmarshal(body, &p)
	h.mu.Lock()
	h.arrived[id]++
	if err != nil || whErr != nil || tsErr != nil || signErr != nil || strconv.FormatInt(unix, 10) != ts || r.Method != http.MethodPost || r.Header.Get("webhook-signature") != want || p.ID != id || p.Type != "doorbell.ring" ||
		id != "msg_"+p.RingID+"_"+p.Resident.UserID {
		h.bad = append(h.bad, fmt.Sprintf("%s %s id=%q signature=%q body=%s", r.Method, r.URL.Path, id, r.Header.Get("webhook-signature"), body))
	}
	h.mu.Unlock()
	if !h.pass(r.Context(), true, func() { h.inFlight <- id }) {
		return // the sender went away: nothing was answered
	}
	w.WriteHeader(http.StatusNoContent)
	h.mu.Lock()
	h.answered[id]++
	h.mu.Unlock()
}

// counts returns copies of the per-id counters and the contract breaches.
func (h *hookReceiver) counts() (arrived, answered map[string]int, bad []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	arrived, answered = map[string]int{}, map[string]int{}
	for k, v := range h.arrived {
		arrived[k] = v
	}
	for k, v := range h.answered {
		answered[k] = v
	}
	return arrived, answered, slices.Clone(h.bad)
}

// streamWake bounds how long a ring takes to reach a live stream on
// another node in TestDoorbellTwoNodes: half of the stream's safety-net
// poll (5 s, internal/httpapi/stream.go), so only a wake-up meets it. It
// normally takes tens of milliseconds.
const streamWake = 2500 * time.Millisecond

// waitUntil polls cond until it holds or timeout passes, then fails with
// what describe says about the state.
func waitUntil(t *testing.T, timeout time.Duration, cond func() bool, describe func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", timeout, describe())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// e2eStream is a live notification stream read in the background.
type e2eStream struct {
	s *testenv.Stream
}

// openE2EStream opens userID's stream on base with a bearer token (after:
// the ?after= value, "" for only new events) and waits until it is
// connected.
func openE2EStream(t *testing.T, base, userID, token, after string) *e2eStream {
	t.Helper()
	url := base + "/users/" + userID + "/notifications/stream"
	if after != "" {
		url += "?after=" + after
	}
	return &e2eStream{s: testenv.OpenStream(t, url, testenv.Bearer(token))}
}

// next waits for the stream's next event and returns it with its ringId.
func (s *e2eStream) next(t *testing.T, within time.Duration) (testenv.Event, string) {
	t.Helper()
	ev := s.s.Next(t, within)
	id, _ := ev.Data["ringId"].(string)
	return ev, id
}

// mintToken runs `spkey token` against a data folder (the server's local
// signing key) and returns the token.
func mintToken(t *testing.T, bin, data, sub string) string {
	t.Helper()
	out, err := exec.Command(bin, "token", "--sub", sub, "--data", data).Output()
	if err != nil {
		t.Fatalf("spkey token: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// addResidents puts n new users (by e-mail) on lock 7 and returns their ids.
func addResidents(t *testing.T, kc client, prefix string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		email := fmt.Sprintf("%s%d@doorbell.example", prefix, i)
		st, u := kc.do("GET", "/users/by-email?email="+email, nil)
		id, _ := u["uuid"].(string)
		if st != 200 || id == "" {
			t.Fatalf("by-email: %d %v", st, u)
		}
		if st, body := kc.do("POST", "/locks/7/AddResident", map[string]any{"email": email, "name": fmt.Sprintf("Resident %d", i)}); st != 200 {
			t.Fatalf("AddResident: %d %v", st, body)
		}
		ids[i] = id
	}
	return ids
}

// ring rings lock 7 and returns the ring id.
func ring(t *testing.T, kc client) string {
	t.Helper()
	st, body := kc.do("POST", "/locks/7/RingDoorbell", map[string]any{"visitorName": "Courier"})
	id, _ := body["ringId"].(string)
	if st != 200 || id == "" {
		t.Fatalf("RingDoorbell: %d %v", st, body)
	}
	return id
}

// lockRings reads lock 7's ring history (up to 100 rings).
func lockRings(t *testing.T, kc client) []app.RingView {
	t.Helper()
	req, _ := http.NewRequest("GET", kc.base+"/locks/7/doorbell/rings?limit=100", nil)
	for k, v := range kc.hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Rings []app.RingView `json:"rings"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("ring history: %d %v", resp.StatusCode, err)
	}
	return out.Rings
}

// undelivered lists the deliveries of rings that are not delivered with
// exactly one attempt, and the ring ids missing from the history.
func undelivered(rings []app.RingView, want []string, channels ...string) []string {
	var bad []string
	seen := map[string]bool{}
	for _, r := range rings {
		seen[r.RingID] = true
		for _, res := range r.Residents {
			got := map[string]bool{}
			for _, d := range res.Deliveries {
				got[d.Channel] = true
				if d.Status != "delivered" || d.Attempts != 1 {
					bad = append(bad, fmt.Sprintf("ring %s resident %s %s: %s after %d attempts (%s)", r.RingID, res.UserID, d.Channel, d.Status, d.Attempts, d.LastError))
				}
			}
			for _, ch := range channels {
				if !got[ch] {
					bad = append(bad, fmt.Sprintf("ring %s resident %s: no %s delivery", r.RingID, res.UserID, ch))
				}
			}
		}
	}
	for _, id := range want {
		if !seen[id] {
			bad = append(bad, "ring "+id+" missing from the history")
		}
	}
	return bad
}

// TestDoorbellTwoNodes runs two `spkey serve` processes on one PostgreSQL
// schema with one hook receiver. A resident streaming from node B gets a
// ring made through node A; then 20 rings one at a time, alternating
// between the nodes, each reach the stream before its safety-net poll
// would have, also those node A delivered (a delivery on one node wakes
// streams on the other), and 20 rings at once through both reach it once
// each, numbered without gaps. Every hook delivery reaches the receiver
// exactly once (by webhook-id, correctly signed), every delivery ends
// delivered after one attempt, and both nodes delivered some.
func TestDoorbellTwoNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary twice")
	}
	if !slices.Contains(testenv.Backends(t), testenv.Postgres) {
		t.Skip("two nodes need PostgreSQL (SPKEY_TEST_POSTGRES_URL)")
	}
	bin := buildBinary(t)
	db := testenv.PostgresURL(t)
	data := t.TempDir() // shared: both nodes sign and accept the same local JWTs
	hook := newHookReceiver(t)
	admin := "two-nodes-admin-key-0123"
	args := []string{"serve", "--addr", "127.0.0.1:0", "--data", data, "--db", db}
	env := func(node string) []string {
		return []string{"SPKEY_ADMIN_API_KEY=" + admin, "SPKEY_LOG_LEVEL=error", "SPKEY_NODE_ID=" + node,
			"SPKEY_NOTIFY_HOOK_URL=" + hook.URL + "/ring", "SPKEY_NOTIFY_HOOK_SECRET=" + hookSecret,
			"SPKEY_WEBHOOK_ALLOW_HTTP=true", "SPKEY_WEBHOOK_ALLOW_PRIVATE=true"} // the receiver is http on 127.0.0.1
	}
	_, baseA := startBinary(t, bin, args, env("node-a")) // creates the signing key
	_, baseB := startBinary(t, bin, args, env("node-b"))
	kcA := setupLock(t, baseA, admin)
	kcB := client{t: t, base: baseB, hdr: kcA.hdr}
	residents := addResidents(t, kcA, "two", 10)
	stream := openE2EStream(t, baseB, residents[0], mintToken(t, bin, data, residents[0]), "")

	first := ring(t, kcA)
	rang := time.Now()
	if ev, id := stream.next(t, 5*time.Second); ev.Event != "DoorbellRang" || id != first || ev.ID != "1" {
		t.Fatalf("node B's stream got %s %s (id %s), want DoorbellRang %s (id 1)", ev.Event, id, ev.ID, first)
	}
	t.Logf("ring through node A reached the stream on node B after %s", time.Since(rang).Round(time.Millisecond))

	// 20 rings one after the other, alternating nodes: each reaches the
	// stream on B before the stream's 5 s safety-net poll could have
	// brought it, so a delivery made on node A woke B's stream (NOTIFY).
	rings := []string{first}
	for i := range 20 {
		kc := kcA
		if i%2 == 1 {
			kc = kcB
		}
		want := ring(t, kc)
		rings = append(rings, want)
		if ev, id := stream.next(t, streamWake); ev.Event != "DoorbellRang" || id != want || ev.ID != strconv.Itoa(len(rings)) {
			t.Fatalf("stream event %d: %s %s (id %s), want DoorbellRang %s (id %d)", len(rings), ev.Event, id, ev.ID, want, len(rings))
		}
	}
	// 20 more at once, 10 through each node: each reaches the stream
	// once, numbered without gaps. The feed is in delivery order: two nodes
	// may deliver concurrent rings in either order.
	burst := make(chan string, 20)
	var wg sync.WaitGroup
	for _, kc := range []client{kcA, kcB} {
		wg.Go(func() {
			for range 10 {
				st, body, err := kc.try("POST", "/locks/7/RingDoorbell", map[string]any{"visitorName": "Courier"})
				id, _ := body["ringId"].(string)
				if err != nil || st != 200 || id == "" {
					burst <- fmt.Sprintf("error: %d %v %v", st, body, err)
					continue
				}
				burst <- id
			}
		})
	}
	wg.Wait()
	close(burst)
	pending := map[string]bool{}
	for id := range burst {
		if strings.HasPrefix(id, "error: ") {
			t.Fatalf("RingDoorbell in the burst: %s", id)
		}
		pending[id] = true
		rings = append(rings, id)
	}
	for n := 22; n <= len(rings); n++ {
		ev, id := stream.next(t, 5*time.Second)
		if ev.Event != "DoorbellRang" || !pending[id] || ev.ID != strconv.Itoa(n) {
			t.Fatalf("stream event %d: %s %s (id %s), want DoorbellRang of a burst ring not seen yet (id %d)", n, ev.Event, id, ev.ID, n)
		}
		delete(pending, id)
	}

	wantIDs := map[string]bool{}
	for _, r := range rings {
		for _, u := range residents {
			wantIDs["msg_"+r+"_"+u] = true
		}
	}
	waitUntil(t, 15*time.Second, func() bool {
		_, answered, _ := hook.counts()
		return len(answered) >= len(wantIDs) && len(undelivered(lockRings(t, kcA), rings, "live", "hook")) == 0
	}, func() string {
		_, answered, _ := hook.counts()
		bad := undelivered(lockRings(t, kcA), rings, "live", "hook")
		return fmt.Sprintf("%d of %d hook deliveries answered; %d deliveries not done, e.g. %v", len(answered), len(wantIDs), len(bad), bad[:min(3, len(bad))])
	})
	arrived, _, bad := hook.counts()
	if len(bad) > 0 {
		t.Errorf("%d hook requests broke the contract, e.g. %s", len(bad), bad[0])
	}
	for id, n := range arrived {
		if !wantIDs[id] {
			t.Errorf("unexpected webhook-id %s", id)
		} else if n != 1 {
			t.Errorf("webhook-id %s arrived %d times, want exactly once", id, n)
		}
	}
	if len(arrived) != len(wantIDs) {
		t.Errorf("%d distinct webhook-ids arrived, want %d", len(arrived), len(wantIDs))
	}

	// Who delivered: every attempt names its node. Each node is woken at
	// once for the rings made through it (the other one hears of them by
	// NOTIFY a round trip later), so over 820 deliveries both take part.
	pg, err := sql.Open("pgx", db)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	rows, err := pg.Query(`SELECT a.node, o.consumer, count(*) FROM delivery_attempts a JOIN outbox o ON o.id = a.outbox_id GROUP BY a.node, o.consumer ORDER BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	perNode := map[string]int{}
	total := 0
	for rows.Next() {
		var node, consumer string
		var n int
		if err := rows.Scan(&node, &consumer, &n); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s delivered %d %s rows", node, n, consumer)
		perNode[node] += n
		total += n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if want := len(rings) * len(residents) * 2; total != want {
		t.Errorf("%d delivery attempts recorded, want %d (one per row)", total, want)
	}
	if perNode["node-a"] == 0 || perNode["node-b"] == 0 || len(perNode) != 2 {
		t.Errorf("deliveries per node %v: want both node-a and node-b, and no other", perNode)
	}
	// The one-at-a-time rings that node A put in the feed of the resident
	// streaming from node B: B's stream had them within streamWake.
	var byA int
	if err := pg.QueryRow(`SELECT count(*) FROM live_feed f JOIN delivery_attempts a ON a.outbox_id = f.outbox_id
		WHERE f.user_id = $1 AND f.n <= 21 AND a.node = 'node-a'`, residents[0]).Scan(&byA); err != nil {
		t.Fatal(err)
	}
	if byA == 0 {
		t.Errorf("node A delivered none of the first 21 rings to the resident streaming from node B: the cross-node wake-up went untested")
	}
	t.Logf("node A delivered %d of the first 21 rings to the stream on node B", byA)
}

// TestDoorbellSIGKILLMidDelivery kills `spkey serve` (SQLite) with SIGKILL
// while a ring's hook deliveries are in flight (the receiver holds them
// unanswered) and restarts it on the same data folder: the same deliveries
// (same webhook-ids) arrive and are answered, the history shows the ring
// with every delivery delivered, and a resident who connects after the
// restart with ?after=0 gets the ring on the live stream.
func TestDoorbellSIGKILLMidDelivery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the real binary")
	}
	bin := buildBinary(t)
	data := t.TempDir()
	hook := newHookReceiver(t)
	admin := "kill-doorbell-admin-key-0123"
	args := []string{"serve", "--addr", "127.0.0.1:0", "--data", data}
	env := func(node string) []string {
		return []string{"SPKEY_ADMIN_API_KEY=" + admin, "SPKEY_LOG_LEVEL=error", "SPKEY_NODE_ID=" + node,
			"SPKEY_NOTIFY_HOOK_URL=" + hook.URL + "/ring", "SPKEY_NOTIFY_HOOK_SECRET=" + hookSecret,
			"SPKEY_WEBHOOK_ALLOW_HTTP=true", "SPKEY_WEBHOOK_ALLOW_PRIVATE=true"} // the receiver is http on 127.0.0.1
	}
	cmd, base := startBinary(t, bin, args, env("before-kill"))
	kc := setupLock(t, base, admin)
	residents := addResidents(t, kc, "kill", 2)

	hook.holdRequests()
	ringID := ring(t, kc)
	inFlight := map[string]bool{}
	for len(inFlight) < len(residents) {
		select {
		case id := <-hook.inFlight:
			inFlight[id] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d hook deliveries reached the receiver", len(inFlight), len(residents))
		}
	}
	for _, u := range residents {
		if !inFlight["msg_"+ringID+"_"+u] {
			t.Fatalf("in flight %v, want msg_%s_%s", inFlight, ringID, u)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	// The held requests end with their connections, unanswered.
	waitUntil(t, 10*time.Second, func() bool { return hook.holding() == 0 }, func() string {
		return fmt.Sprintf("%d hook requests still held after the sender died", hook.holding())
	})
	if _, answered, _ := hook.counts(); len(answered) != 0 {
		t.Fatalf("answered before the kill: %v", answered)
	}
	hook.release()

	_, base2 := startBinary(t, bin, args, env("after-kill"))
	kc2 := client{t: t, base: base2, hdr: kc.hdr}
	waitUntil(t, 15*time.Second, func() bool {
		_, answered, _ := hook.counts()
		return len(answered) == len(residents)
	}, func() string {
		arrived, answered, _ := hook.counts()
		return fmt.Sprintf("after the restart: arrived %v, answered %v", arrived, answered)
	})
	arrived, answered, bad := hook.counts()
	if len(bad) > 0 {
		t.Errorf("hook requests broke the contract: %v", bad)
	}
	for id := range inFlight {
		if answered[id] != 1 || arrived[id] != 2 {
			t.Errorf("%s: arrived %d times (want 2: killed, then again), answered %d (want 1)", id, arrived[id], answered[id])
		}
	}
	if len(arrived) != len(inFlight) {
		t.Errorf("webhook-ids %v, want only %v", arrived, inFlight)
	}

	// The history has the ring, every delivery done once the restart is in.
	var rings []app.RingView
	waitUntil(t, 10*time.Second, func() bool {
		rings = lockRings(t, kc2)
		return len(undelivered(rings, []string{ringID}, "live", "hook")) == 0
	}, func() string { return fmt.Sprint(undelivered(rings, []string{ringID}, "live", "hook")) })
	if len(rings) != 1 || rings[0].RingID != ringID || rings[0].Status != "ringing" || len(rings[0].Residents) != len(residents) || rings[0].VisitorName != "Courier" {
		t.Fatalf("history after restart: %+v", rings)
	}

	// The live feed kept the ring too.
	s := openE2EStream(t, base2, residents[1], mintToken(t, bin, data, residents[1]), "0")
	if ev, id := s.next(t, 5*time.Second); ev.Event != "DoorbellRang" || id != ringID || ev.ID != "1" {
		t.Fatalf("stream after restart: %s %s (id %s), want DoorbellRang %s (id 1)", ev.Event, id, ev.ID, ringID)
	}
}
