package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/testenv"
	"github.com/spkey-dev/spkey/internal/webhook"
)

// The harness: a real spkey server per test driven over HTTP (the admin
// API, the partner's key), the partner's expected events read from the
// store, and waits for conditions with deadlines. The receivers are in
// receiver_test.go.

// wait is how long any condition may take to come true: generous, since
// every step here takes milliseconds when nothing is wrong.
const wait = 15 * time.Second

// noPoll turns the dispatcher's safety-net poll off (an hour): every step
// of a delivery that needs no retry must then be woken by the step before
// it (a commit, a fan-out, a verification, a finished delivery), as it is
// for latency's sake.
func noPoll(opt testenv.Options) testenv.Options {
	opt.Notify.PollInterval = time.Hour
	return opt
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// api drives one spkey server over HTTP.
type api struct {
	t   testing.TB
	srv *testenv.Server
}

// reply is an answer of the spkey API.
type reply struct {
	Status int
	Raw    []byte
	Header http.Header
}

// Obj decodes the answer as a JSON object.
func (r reply) Obj(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Raw, &m); err != nil {
		t.Fatalf("answer %d is not a JSON object: %s", r.Status, r.Raw)
	}
	return m
}

// Into decodes the answer into v.
func (r reply) Into(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Raw, v); err != nil {
		t.Fatalf("decode answer %d %s: %v", r.Status, r.Raw, err)
	}
}

// adminHdr and keyHdr name the caller of a request.
func adminHdr() map[string]string { return map[string]string{"X-Admin-API-Key": testenv.AdminKey} }

func keyHdr(key string) map[string]string { return map[string]string{"X-API-Key": key} }

// do sends one request.
func (a api) do(method, path string, hdr map[string]string, body any) reply {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		js, err := json.Marshal(body)
		if err != nil {
			a.t.Fatal(err)
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, a.srv.URL+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return reply{Status: resp.StatusCode, Raw: raw, Header: resp.Header}
}

// must sends one request and fails the test unless it gets status.
func (a api) must(status int, method, path string, hdr map[string]string, body any) reply {
	a.t.Helper()
	r := a.do(method, path, hdr, body)
	if r.Status != status {
		a.t.Fatalf("%s %s: %d %s, want %d", method, path, r.Status, r.Raw, status)
	}
	return r
}

// partner is one tenant on a test server, with its lock resident.
type partner struct {
	api
	org, key string
	resident string // a user id to add to and remove from locks
	on       map[int64]bool
}

// newPartner registers org on srv with an API key.
func newPartner(t testing.TB, srv *testenv.Server, org string) *partner {
	t.Helper()
	p := &partner{api: api{t: t, srv: srv}, org: org, key: srv.Tenant(t, org, false), on: map[int64]bool{}}
	u := p.must(http.StatusOK, "GET", "/users/by-email?email="+url.QueryEscape("resident@"+org+".test"), keyHdr(p.key), nil).Obj(t)
	p.resident, _ = u["uuid"].(string)
	if p.resident == "" {
		t.Fatalf("no user id in %v", u)
	}
	return p
}

// Lock creates lock id as the partner's (LockCreated, OrganizationSet).
func (p *partner) Lock(id int64) {
	p.t.Helper()
	p.must(http.StatusCreated, "POST", fmt.Sprintf("/locks/%d/CreateLock", id), keyHdr(p.key),
		map[string]any{"index": 1, "uuid": fmt.Sprintf("%08d-2b1f-4e6d-9c8b-7a6f5e4d3c2b", id)})
}

// Toggle records one more event on lock id: the resident is added when
// absent and removed when present.
func (p *partner) Toggle(id int64) {
	p.t.Helper()
	cmd := "AddResident"
	if p.on[id] {
		cmd = "RemoveResident"
	}
	p.must(http.StatusOK, "POST", fmt.Sprintf("/locks/%d/%s", id, cmd), keyHdr(p.key), map[string]any{"name": "Resident", "userId": p.resident})
	p.on[id] = !p.on[id]
}

// CreateHook creates a webhook with the admin API and returns its id and
// secret.
func (p *partner) CreateHook(body map[string]any) (id, secret string) {
	p.t.Helper()
	var out struct {
		Success   bool   `json:"success"`
		Aggregate string `json:"aggregateId"`
		WebhookID string `json:"webhookId"`
		Status    string `json:"status"`
		Secret    string `json:"secret"`
	}
	p.must(http.StatusCreated, "POST", "/tenants/"+p.org+"/webhooks", adminHdr(), body).Into(p.t, &out)
	if !out.Success || out.Aggregate != p.org || out.WebhookID == "" || !strings.HasPrefix(out.Secret, "whsec_") || out.Status != "pending" {
		p.t.Fatalf("create webhook answered %+v", out)
	}
	return out.WebhookID, out.Secret
}

// hookView is a webhook as GET shows it.
type hookView struct {
	ID             string   `json:"id"`
	URL            string   `json:"url"`
	Events         []string `json:"events"`
	Status         string   `json:"status"`
	AuthType       string   `json:"authType"`
	VerifiedAt     *string  `json:"verifiedAt"`
	LastError      *string  `json:"lastError"`
	LastStatusCode *int     `json:"lastStatusCode"`
	DisabledAt     *string  `json:"disabledAt"`
	QueueFullSince *string  `json:"queueFullSince"`
}

// Hook reads webhook id with the admin API.
func (p *partner) Hook(id string) hookView {
	p.t.Helper()
	var v hookView
	p.must(http.StatusOK, "GET", "/tenants/"+p.org+"/webhooks/"+id, adminHdr(), nil).Into(p.t, &v)
	return v
}

// WaitStatus waits until webhook id has status.
func (p *partner) WaitStatus(id, status string) hookView {
	p.t.Helper()
	var v hookView
	eventually(p.t, wait, "webhook "+id+" to be "+status, func() bool { v = p.Hook(id); return v.Status == status })
	return v
}

// ActiveHook creates a webhook and waits until it is verified.
func (p *partner) ActiveHook(body map[string]any) (id, secret string) {
	p.t.Helper()
	id, secret = p.CreateHook(body)
	p.WaitStatus(id, "active")
	return id, secret
}

// Expected returns the envelope ids of the events of lock id that belong
// to the partner (those it must receive with a ["*"] filter), in version
// order, with their types.
func (p *partner) Expected(id int64) (ids, types []string) {
	p.t.Helper()
	recs, err := p.srv.Store.Stream(context.Background(), lock.AggregateType, strconv.FormatInt(id, 10), 0, 0)
	if err != nil {
		p.t.Fatal(err)
	}
	for _, r := range recs {
		if r.OrgID == p.org {
			ids = append(ids, webhook.EventID(r))
			types = append(types, r.Type)
		}
	}
	return ids, types
}

// Traffic creates locks, toggles a resident on each of them rounds times,
// and returns the envelope ids of every event the partner must receive,
// lock by lock, each lock's in version order.
func (p *partner) Traffic(locks []int64, rounds int) (want []string) {
	p.t.Helper()
	for _, l := range locks {
		p.Lock(l)
	}
	for range rounds {
		for _, l := range locks {
			p.Toggle(l)
		}
	}
	for _, l := range locks {
		w, _ := p.Expected(l)
		want = append(want, w...)
	}
	return want
}

// checkOnce fails t unless delivered holds each event of want exactly
// once, and nothing else.
func checkOnce(t testing.TB, delivered []request, want []string) {
	t.Helper()
	count := map[string]int{}
	for _, q := range delivered {
		count[q.Env.ID]++
	}
	for _, w := range want {
		if count[w] != 1 {
			t.Errorf("event %s delivered %d times, want once", w, count[w])
		}
		delete(count, w)
	}
	if len(count) != 0 {
		t.Errorf("unexpected deliveries: %v", count)
	}
}

// eventID is the envelope id of version v of lock id.
func eventID(id int64, v int64) string {
	return webhook.EventID(es.Record{AggregateType: lock.AggregateType, AggregateID: strconv.FormatInt(id, 10), Version: v})
}

// deliveryLog is a page of the delivery log.
type deliveryLog struct {
	Deliveries []deliveryEntry `json:"deliveries"`
	NextCursor *string         `json:"nextCursor"`
}

type deliveryEntry struct {
	ID             int64          `json:"id"`
	EventID        string         `json:"eventId"`
	EventType      string         `json:"eventType"`
	AggregateType  string         `json:"aggregateType"`
	AggregateID    string         `json:"aggregateId"`
	Version        int64          `json:"version"`
	Status         string         `json:"status"`
	EventTime      string         `json:"eventTime"`
	QueuedAt       string         `json:"queuedAt"`
	LastStatusCode *int           `json:"lastStatusCode"`
	LastError      *string        `json:"lastError"`
	Attempts       []attemptEntry `json:"attempts"`
}

type attemptEntry struct {
	At         string  `json:"at"`
	Outcome    string  `json:"outcome"`
	StatusCode *int    `json:"statusCode"`
	LatencyMS  int64   `json:"latencyMs"`
	Error      *string `json:"error"`
}

// Log reads one page of webhook id's delivery log with the admin API;
// query is appended as is ("?status=failed").
func (p *partner) Log(id, query string) deliveryLog {
	p.t.Helper()
	var l deliveryLog
	p.must(http.StatusOK, "GET", "/tenants/"+p.org+"/webhooks/"+id+"/deliveries"+query, adminHdr(), nil).Into(p.t, &l)
	return l
}

// AllLog reads the whole delivery log of webhook id, newest first.
func (p *partner) AllLog(id string) []deliveryEntry {
	p.t.Helper()
	var out []deliveryEntry
	q := "?limit=100"
	for {
		l := p.Log(id, q)
		out = append(out, l.Deliveries...)
		if l.NextCursor == nil {
			return out
		}
		q = "?limit=100&cursor=" + *l.NextCursor
	}
}

// LogDone waits until webhook id's log has n deliveries, none pending,
// and returns it.
func (p *partner) LogDone(id string, n int) []deliveryEntry {
	p.t.Helper()
	var l []deliveryEntry
	eventually(p.t, wait, fmt.Sprintf("%d finished deliveries of webhook %s", n, id), func() bool {
		l = p.AllLog(id)
		if len(l) != n {
			return false
		}
		for _, d := range l {
			if d.Status == "pending" {
				return false
			}
		}
		return true
	})
	return l
}
