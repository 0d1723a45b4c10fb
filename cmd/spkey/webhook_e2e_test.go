package main

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/testenv"
	"github.com/spkey-dev/spkey/internal/webhook"
)

// partnerRequest is one POST a partnerReceiver got.
type partnerRequest struct {
	id, ts, sig string
	body        []byte
	env         webhook.Envelope // zero for a verification
}

// partnerReceiver is a partner's webhook endpoint: it records every
// envelope by its id and answers 204, except that, while holding, envelope
// requests wait unanswered until release or until the sender goes away.
// Verification POSTs are always answered 204. Signatures are checked
// afterwards (checkSignatures): the secret is only known once the create
// answer is read, and the verification POST may come first.
type partnerReceiver struct {
	*httptest.Server
	mu            sync.Mutex
	reqs          []partnerRequest // every request, in arrival order
	verifications int
	arrived       map[string]int     // envelope id → requests
	answered      map[string]int     // envelope id → 2xx answers
	order         map[string][]int64 // aggregate → versions in the order their 2xx answers were decided
	bad           []string           // requests that broke the contract
	holdAfter     int                // hold envelopes once this many were answered
	requestGate
}

func newPartnerReceiver(t *testing.T) *partnerReceiver {
	p := &partnerReceiver{arrived: map[string]int{}, answered: map[string]int{}, order: map[string][]int64{}}
	p.Server = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(func() { p.release(); p.Close() })
	return p
}

func (p *partnerReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	req := partnerRequest{id: r.Header.Get("webhook-id"), ts: r.Header.Get("webhook-timestamp"), sig: r.Header.Get("webhook-signature"), body: body}
	var probe struct {
		Type string `json:"type"`
		ID   string `json:"id"`
	}
	_ = json.Unmarshal(body, &probe)
	p.mu.Lock()
	if probe.Type == webhook.VerificationType {
		p.reqs = append(p.reqs, req)
		p.verifications++
		if err != nil || probe.ID != req.id {
			p.bad = append(p.bad, fmt.Sprintf("verification id=%q body=%s", req.id, body))
		}
		p.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if jerr := json.Unmarshal(body, &req.env); err != nil || jerr != nil || r.Method != http.MethodPost || req.env.ID != req.id ||
		req.env.Source != webhook.Source || req.env.DetailType == "" || req.env.Detail.AggregateID == "" {
		p.bad = append(p.bad, fmt.Sprintf("%s %s id=%q body=%s", r.Method, r.URL.Path, req.id, body))
	}
	p.reqs = append(p.reqs, req)
	p.arrived[req.id]++
	subject := len(p.answered) >= p.holdAfter
	p.mu.Unlock()
	if !p.pass(r.Context(), subject, nil) {
		return // the sender went away: nothing was answered
	}
	// Recorded before the answer is written: the sender cannot send the
	// aggregate's next event before it reads this answer.
	p.mu.Lock()
	p.answered[req.id]++
	agg := req.env.Detail.AggregateType + "/" + req.env.Detail.AggregateID
	p.order[agg] = append(p.order[agg], req.env.Detail.Version)
	p.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// holdFrom holds envelope requests from the moment n distinct envelopes
// have been answered.
func (p *partnerReceiver) holdFrom(n int) {
	p.mu.Lock()
	p.holdAfter = n
	p.mu.Unlock()
	p.holdRequests()
}

// counts returns copies of the per-id counters and of the order of
// answers per aggregate.
func (p *partnerReceiver) counts() (arrived, answered map[string]int, order map[string][]int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	order = map[string][]int64{}
	for k, v := range p.order {
		order[k] = slices.Clone(v)
	}
	arrived, answered = map[string]int{}, map[string]int{}
	for k, v := range p.arrived {
		arrived[k] = v
	}
	for k, v := range p.answered {
		answered[k] = v
	}
	return arrived, answered, order
}

// checkSignatures checks every request's Standard Webhooks signature
// against secret, as a partner would (the standard-webhooks library's
// Verify: one of the signatures is by secret, and the timestamp is within
// 5 minutes), and returns the contract breaches, those of serve included.
func (p *partnerReceiver) checkSignatures(secret string) []string {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil || !strings.HasPrefix(secret, "whsec_") {
		return []string{fmt.Sprintf("secret %q is not whsec_ + base64", secret)}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	bad := slices.Clone(p.bad)
	for _, r := range p.reqs {
		h := http.Header{}
		h.Set(standardwebhooks.HeaderWebhookID, r.id)
		h.Set(standardwebhooks.HeaderWebhookTimestamp, r.ts)
		h.Set(standardwebhooks.HeaderWebhookSignature, r.sig)
		ts, tsErr := strconv.ParseInt(r.ts, 10, 64)
		if err := wh.Verify(r.body, h); err != nil || tsErr != nil || strconv.FormatInt(ts, 10) != r.ts {
			bad = append(bad, fmt.Sprintf("id %s: timestamp %q, signature %q: %v", r.id, r.ts, r.sig, err))
		}
	}
	return bad
}

const partnerAdmin = "webhook-e2e-admin-key-0123"

// startPartnerNode runs `spkey serve` on data (and db, if not "") as node,
// with http and loopback webhook URLs allowed, quick webhook retries, a 5 s
// webhook timeout and the outbox lease given (how soon a killed PostgreSQL
// node's deliveries are taken over; it must exceed the timeout by 5 s).
func startPartnerNode(t *testing.T, bin, data, db, node string, lease time.Duration) (*exec.Cmd, string) {
	t.Helper()
	args := []string{"serve", "--addr", "127.0.0.1:0", "--data", data, "--webhook-retry-base", "100ms", "--webhook-timeout", "5s", "--outbox-lease", lease.String()}
	if db != "" {
		args = append(args, "--db", db)
	}
	return startBinary(t, bin, args, []string{"SPKEY_ADMIN_API_KEY=" + partnerAdmin, "SPKEY_LOG_LEVEL=error", "SPKEY_NODE_ID=" + node,
		"SPKEY_WEBHOOK_ALLOW_HTTP=true", "SPKEY_WEBHOOK_ALLOW_PRIVATE=true"}) // the receiver is http on 127.0.0.1
}

// partner is a tenant with one webhook subscribed to every event.
type partner struct {
	org, hook, secret string
	admin, key        client
}

// setupPartner registers org through base, issues its key, creates a
// webhook to hookURL for "*" and waits until it is verified (active).
func setupPartner(t *testing.T, base, org, hookURL string) partner {
	t.Helper()
	ac := client{t: t, base: base}.with("X-Admin-API-Key", partnerAdmin)
	if st, body := ac.do("POST", "/tenants/"+org+"/register", map[string]any{"orgName": "Partner " + org}); st != 201 {
		t.Fatalf("register: %d %v", st, body)
	}
	_, body := ac.do("POST", "/api-keys", map[string]any{"orgId": org})
	key, _ := body["apiKey"].(string)
	if key == "" {
		t.Fatalf("api key: %v", body)
	}
	st, body := ac.do("POST", "/tenants/"+org+"/webhooks", map[string]any{"url": hookURL, "events": []string{"*"}})
	p := partner{org: org, admin: ac, key: client{t: t, base: base}.with("X-API-Key", key)}
	p.hook, _ = body["webhookId"].(string)
	p.secret, _ = body["secret"].(string)
	if st != 201 || p.hook == "" || p.secret == "" || body["status"] != "pending" {
		t.Fatalf("create webhook: %d %v", st, body)
	}
	var status string
	waitUntil(t, 10*time.Second, func() bool {
		_, w := ac.do("GET", "/tenants/"+org+"/webhooks/"+p.hook, nil)
		status, _ = w["status"].(string)
		return status == "active"
	}, func() string { return "webhook status " + status })
	return p
}

// driveLocks creates locks and, on each, adds and removes one resident in
// turn, toggles times (CreateLock records more than one event). The locks go in
// parallel, each lock's commands one after the other, and command i of a
// lock goes to clients[i%len(clients)]. It returns every lock's final
// version by aggregate id.
func driveLocks(t *testing.T, clients []client, prefix string, locks []int, toggles int) map[string]int64 {
	t.Helper()
	final := map[string]int64{}
	var mu sync.Mutex
	var errs []string
	var wg sync.WaitGroup
	for _, id := range locks {
		wg.Go(func() {
			fail := func(format string, a ...any) {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("lock %d: ", id)+fmt.Sprintf(format, a...))
				mu.Unlock()
			}
			path := "/locks/" + strconv.Itoa(id)
			email := fmt.Sprintf("%s-%d@webhook.example", prefix, id)
			st, u, err := clients[0].try("GET", "/users/by-email?email="+url.QueryEscape(email), nil)
			user, _ := u["uuid"].(string)
			if err != nil || st != 200 || user == "" {
				fail("by-email: %d %v %v", st, u, err)
				return
			}
			var version int64
			for i := range toggles + 1 {
				c := clients[i%len(clients)]
				cmd, body, want := "CreateLock", map[string]any{"index": 1, "uuid": fmt.Sprintf("11111111-2222-4333-8444-%012d", id)}, 201
				switch {
				case i == 0:
				case i%2 == 1:
					cmd, body, want = "AddResident", map[string]any{"email": email, "name": "Resident " + strconv.Itoa(id)}, 200
				default:
					cmd, body, want = "RemoveResident", map[string]any{"userId": user}, 200
				}
				st, ans, err := c.try("POST", path+"/"+cmd, body)
				v, _ := ans["version"].(float64)
				if err != nil || st != want || int64(v) <= version || ans["aggregateId"] != strconv.Itoa(id) {
					fail("%s: %d %v %v (want a version above %d)", cmd, st, ans, err, version)
					return
				}
				version = int64(v)
			}
			mu.Lock()
			final[strconv.Itoa(id)] = version
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("commands failed: %s", strings.Join(errs, "; "))
	}
	return final
}

// firstSent is the first version of a lock that reaches the partner.
// CreateLock records LockCreated (v1) and then OrganizationSet (v2), and
// an event carries the tenant of the state after it: LockCreated has none,
// so it is not queued for the tenant's webhooks (README, "Which events").
const firstSent = 2

// eventIDs returns the envelope id of every version of every lock from
// firstSent on, with a label, and those of the earlier versions (which may
// come too).
func eventIDs(final map[string]int64) (want map[string]string, optional map[string]bool) {
	want, optional = map[string]string{}, map[string]bool{}
	for agg, n := range final {
		for v := int64(1); v <= n; v++ {
			id := webhook.EventID(es.Record{AggregateType: lock.AggregateType, AggregateID: agg, Version: v})
			if v < firstSent {
				optional[id] = true
				continue
			}
			want[id] = fmt.Sprintf("lock %s v%d", agg, v)
		}
	}
	return want, optional
}

// missing lists the events of want not answered 2xx yet, sorted.
// awaitDelivered waits until recv has answered every envelope of want and
// the delivery log accounts for each (logProblems with maxAttempts), then
// checks every request's signature. Once the log has
// every delivery done nothing is pending, so nothing more can arrive.
func awaitDelivered(t *testing.T, recv *partnerReceiver, p partner, want map[string]string, optional map[string]bool, maxAttempts int) {
	t.Helper()
	waitUntil(t, 30*time.Second, func() bool {
		_, answered, _ := recv.counts()
		return len(missing(want, answered)) == 0
	}, func() string {
		_, answered, _ := recv.counts()
		m := missing(want, answered)
		return fmt.Sprintf("%d of %d envelopes not answered, e.g. %v", len(m), len(want), m[:min(3, len(m))])
	})
	var log []loggedDelivery
	waitUntil(t, 10*time.Second, func() bool {
		log = p.deliveryLog(t)
		return len(logProblems(log, want, optional, maxAttempts)) == 0
	}, func() string {
		bad := logProblems(log, want, optional, maxAttempts)
		return fmt.Sprintf("delivery log: %d problems, e.g. %v", len(bad), bad[:min(3, len(bad))])
	})
	if bad := recv.checkSignatures(p.secret); len(bad) > 0 {
		t.Errorf("%d requests broke the contract, e.g. %s", len(bad), bad[0])
	}
}

func missing(want map[string]string, answered map[string]int) []string {
	var out []string
	for id, label := range want {
		if answered[id] == 0 {
			out = append(out, label)
		}
	}
	slices.Sort(out)
	return out
}

// loggedDelivery is one entry of a webhook's delivery log.
type loggedDelivery struct {
	ID          int64  `json:"id"`
	EventID     string `json:"eventId"`
	AggregateID string `json:"aggregateId"`
	Version     int64  `json:"version"`
	Status      string `json:"status"`
	Attempts    []struct {
		Outcome    string `json:"outcome"`
		StatusCode *int   `json:"statusCode"`
	} `json:"attempts"`
}

// deliveryLog reads the partner's whole delivery log, page by page.
func (p partner) deliveryLog(t *testing.T) []loggedDelivery {
	t.Helper()
	var all []loggedDelivery
	cursor := ""
	for {
		req, _ := http.NewRequest("GET", p.admin.base+"/tenants/"+p.org+"/webhooks/"+p.hook+"/deliveries?limit=100&cursor="+cursor, nil)
		req.Header.Set("X-Admin-API-Key", partnerAdmin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var page struct {
			Deliveries []loggedDelivery `json:"deliveries"`
			NextCursor *string          `json:"nextCursor"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("delivery log: %d %v", resp.StatusCode, err)
		}
		all = append(all, page.Deliveries...)
		if page.NextCursor == nil {
			return all
		}
		cursor = *page.NextCursor
	}
}

// logProblems compares a delivery log with the events it should hold: one
// delivery per event, delivered, its last attempt delivered with a 2xx,
// and at most maxAttempts attempts (0: any number).
func logProblems(log []loggedDelivery, want map[string]string, optional map[string]bool, maxAttempts int) []string {
	var bad []string
	seen := map[string]int{}
	for _, d := range log {
		seen[d.EventID]++
		if want[d.EventID] == "" && !optional[d.EventID] {
			bad = append(bad, fmt.Sprintf("delivery %d of an unexpected event %s (lock %s v%d)", d.ID, d.EventID, d.AggregateID, d.Version))
		}
		n := len(d.Attempts)
		switch {
		case d.Status != "delivered" || n == 0:
			bad = append(bad, fmt.Sprintf("delivery %d (lock %s v%d): %s after %d attempts", d.ID, d.AggregateID, d.Version, d.Status, n))
		case d.Attempts[n-1].Outcome != "delivered" || d.Attempts[n-1].StatusCode == nil || *d.Attempts[n-1].StatusCode != 204:
			bad = append(bad, fmt.Sprintf("delivery %d (lock %s v%d): last attempt %+v", d.ID, d.AggregateID, d.Version, d.Attempts[n-1]))
		case maxAttempts > 0 && n > maxAttempts:
			bad = append(bad, fmt.Sprintf("delivery %d (lock %s v%d): %d attempts, want at most %d", d.ID, d.AggregateID, d.Version, n, maxAttempts))
		}
	}
	for id, label := range want {
		if seen[id] != 1 {
			bad = append(bad, fmt.Sprintf("%s has %d deliveries in the log, want 1", label, seen[id]))
		}
	}
	return bad
}

// outOfOrder lists the aggregates whose first 2xx answers did not come in
// version order without gaps (a repeated answer is dropped).
func outOfOrder(order map[string][]int64) []string {
	var bad []string
	for agg, vs := range order {
		var firsts []int64
		for _, v := range vs {
			if !slices.Contains(firsts, v) {
				firsts = append(firsts, v)
			}
		}
		for i, v := range firsts {
			if v != firsts[0]+int64(i) {
				bad = append(bad, fmt.Sprintf("%s answered in the order %v", agg, vs))
				break
			}
		}
	}
	slices.Sort(bad)
	return bad
}

// TestWebhookSIGKILLMidDelivery kills `spkey serve` with SIGKILL while
// partner deliveries are in flight (the receiver holds them unanswered,
// after the first few were answered) and commands keep queueing more, then
// starts it again on the same data (SQLite folder, or PostgreSQL schema
// after the dead node's 10 s lease): every event's envelope is then answered
// 2xx at least once, in version order per lock, correctly signed, nothing
// else arrives, and the delivery log shows every delivery delivered.
func TestWebhookSIGKILLMidDelivery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the real binary")
	}
	bin := buildBinary(t)
	for _, b := range testenv.Backends(t) {
		t.Run(string(b), func(t *testing.T) {
			data, db := t.TempDir(), ""
			if b == testenv.Postgres {
				db = testenv.PostgresURL(t)
			}
			recv := newPartnerReceiver(t)
			cmd, base := startPartnerNode(t, bin, data, db, "before-kill", 10*time.Second)
			p := setupPartner(t, base, "kill", recv.URL+"/partner")

			const answerFirst = 5
			recv.holdFrom(answerFirst)
			locks := []int{1, 2, 3, 4, 5, 6, 7, 8}
			final := driveLocks(t, []client{p.key}, "kill", locks, 6)
			want, optional := eventIDs(final)
			// Every webhook gets at most DefaultPerTarget requests at
			// once, one per lock: that many are held in the end.
			inFlight := min(webhook.DefaultPerTarget, len(locks))
			waitUntil(t, 15*time.Second, func() bool { return recv.holding() >= inFlight }, func() string {
				_, answered, _ := recv.counts()
				return fmt.Sprintf("%d requests held, want %d; %d answered", recv.holding(), inFlight, len(answered))
			})
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			// The held requests end with their connections, unanswered.
			waitUntil(t, 10*time.Second, func() bool { return recv.holding() == 0 }, func() string {
				return fmt.Sprintf("%d requests still held after the sender died", recv.holding())
			})
			arrivedBefore, answeredBefore, _ := recv.counts()
			recv.release()
			t.Logf("before the kill: %d of %d envelopes answered, %d arrived (%d held when killed)", len(answeredBefore), len(want), len(arrivedBefore), inFlight)
			if len(answeredBefore) < answerFirst || len(answeredBefore) >= len(want) {
				t.Fatalf("%d envelopes answered before the kill, want from %d to fewer than %d", len(answeredBefore), answerFirst, len(want))
			}

			_, base2 := startPartnerNode(t, bin, data, db, "after-kill", 10*time.Second)
			p.admin.base, p.key.base = base2, base2
			awaitDelivered(t, recv, p, want, optional, 0)
			arrived, answered, order := recv.counts()
			for id := range arrived {
				if want[id] == "" && !optional[id] {
					t.Errorf("unexpected envelope %s", id)
				}
			}
			if bad := outOfOrder(order); len(bad) > 0 {
				t.Errorf("answers out of version order: %v", bad)
			}
			// The envelopes held at the kill were sent again and answered.
			again, resent := 0, 0
			for _, n := range answered {
				again += n - 1
			}
			for id, n := range arrivedBefore {
				if n > answeredBefore[id] {
					resent++
					if answered[id] == answeredBefore[id] {
						t.Errorf("envelope %s (%s), in flight at the kill, was not answered after the restart", id, want[id])
					}
				}
			}
			if resent == 0 {
				t.Errorf("no envelope was in flight at the kill")
			}
			t.Logf("after the restart: all %d answered; %d answered more than once; %d in flight at the kill answered after it", len(want), again, resent)
		})
	}
}

// TestWebhookTwoNodes runs two `spkey serve` processes on one PostgreSQL
// schema with one partner receiver that answers every request 204.
// Commands alternate between the nodes; every event's envelope reaches the
// receiver exactly once, in version order per lock, correctly signed, and
// the delivery log shows one delivered attempt per event. Which node sent
// what is logged: both usually take part, but nothing makes it certain.
func TestWebhookTwoNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary twice")
	}
	if !slices.Contains(testenv.Backends(t), testenv.Postgres) {
		t.Skip("two nodes need PostgreSQL (SPKEY_TEST_POSTGRES_URL)")
	}
	bin := buildBinary(t)
	db := testenv.PostgresURL(t)
	data := t.TempDir()
	recv := newPartnerReceiver(t)
	_, baseA := startPartnerNode(t, bin, data, db, "node-a", time.Minute) // creates the signing key
	_, baseB := startPartnerNode(t, bin, data, db, "node-b", time.Minute)
	p := setupPartner(t, baseA, "two", recv.URL+"/partner")
	kcB := client{t: t, base: baseB, hdr: p.key.hdr}

	locks := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	final := driveLocks(t, []client{p.key, kcB}, "two", locks, 9)
	want, optional := eventIDs(final)
	awaitDelivered(t, recv, p, want, optional, 1)
	arrived, answered, order := recv.counts()
	for id, n := range arrived {
		switch {
		case want[id] == "" && !optional[id]:
			t.Errorf("unexpected envelope %s", id)
		case n != 1 || answered[id] != 1:
			t.Errorf("envelope %s (%s) arrived %d times and was answered %d times, want exactly once", id, want[id], n, answered[id])
		}
	}
	if bad := outOfOrder(order); len(bad) > 0 {
		t.Errorf("answers out of version order: %v", bad)
	}

	// Who sent what: every attempt names its node (the delivery log does
	// not show it, so ask the database).
	pg, err := sql.Open("pgx", db)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	rows, err := pg.Query(`SELECT a.node, count(*) FROM delivery_attempts a JOIN outbox o ON o.id = a.outbox_id
		WHERE o.consumer = $1 GROUP BY a.node ORDER BY 1`, es.ConsumerWebhookSend)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	perNode := map[string]int{}
	for rows.Next() {
		var node string
		var n int
		if err := rows.Scan(&node, &n); err != nil {
			t.Fatal(err)
		}
		perNode[node] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for node := range perNode {
		if node != "node-a" && node != "node-b" {
			t.Errorf("attempts by an unknown node %q: %v", node, perNode)
		}
	}
	t.Logf("%d envelopes delivered exactly once; attempts per node: %v", len(want), perNode)
}
