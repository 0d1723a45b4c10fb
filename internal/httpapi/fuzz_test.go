package httpapi_test

import (
	"encoding/json"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/spkey-dev/spkey/internal/domain"
)

// The HTTP fuzz targets: `go test` runs their seeds and
// testdata/fuzz/<FuzzName>/; scripts/test.sh fuzzes each for a bounded
// time. Each input is one request to the server of newFuzzFixture; every
// answer is below 500 and a refusal stores nothing (fuzzFixture.check).

// fuzzBodyRoute is a command route whose JSON body is fuzzed; seeds are
// bodies it accepts or refuses for a reason worth starting from.
type fuzzBodyRoute struct {
	method, path string // {ring} and {hook} name the fixture's ring and webhook
	cred         fuzzCred
	seeds        []string
}

// fuzzBodyRoutes are the routes of routes.go that take a JSON body, with
// credentials that let the body be decoded and acted on. The routes
// without a body (answer, decline, verify, redeliver, POST
// /api-keys/rotate) are in FuzzPathIDs.
var fuzzBodyRoutes = []fuzzBodyRoute{
	{"POST", "/locks/1/CreateLock", credKey, []string{`{"index":1,"uuid":"` + fuzzLockUUID + `"}`,
		`{"index":1,"uuid":"` + fuzzLockUUID + `","serialNumber":"SN-1","vendorName":"acme","keys":[]}`}},
	{"POST", "/locks/2/CreateLock", credKey, []string{`{"index":2,"uuid":"` + fuzzLock2UUID + `","ownerId":"` + fuzzOwner + `"}`, `{"index":1e308}`}},
	{"POST", "/locks/1/SetOrganization", credKey, []string{`{"orgId":"acme"}`, `{"orgId":""}`}},
	{"POST", "/locks/1/SetOwner", credKey, []string{`{"userId":"` + fuzzOwner + `"}`, `{"userId":"` + strings.ToUpper(fuzzOwner) + `"}`}},
	{"POST", "/locks/1/AddResident", credKey, []string{`{"name":"Owner","email":"owner@fuzz.test"}`,
		`{"name":"Phone","phoneNumber":"+48 600 700 800"}`, `{"name":"Id","userId":"` + fuzzPhoneOnly + `"}`, `{"Email":"owner@fuzz.test","NAME":"x"}`}},
	{"POST", "/locks/1/RemoveResident", credKey, []string{`{"email":"nobody@fuzz.test"}`, `{"userId":"` + fuzzPhoneOnly + `"}`}},
	{"POST", "/locks/1/RingDoorbell", credKey, []string{`{"visitorName":"Courier","message":"Parcel","source":"panel"}`, `{}`,
		`{"residentUserId":"` + fuzzOwner + `","visitorName":"\u202eevil"}`}},
	{"POST", "/users/" + fuzzOwner + "/SetNotificationPreferences", credOwner, []string{`{"channels":{"live":true,"email":false}}`,
		`{"quietHours":{"start":"22:00","end":"07:00","timeZone":"Europe/Warsaw"}}`, `{"quietHours":{"start":"25:00","end":"x","timeZone":"Mars/Base"}}`}},
	{"POST", "/users", credAdmin, []string{`{"detail":{"data":{"user_name":"signup@fuzz.test","user_id":"auth0|1"}}}`, `{"detail":{"data":{"user_name":"","user_id":"not-a-uuid"}}}`}},
	{"POST", "/users/" + fuzzNewUser + "/CreateUser", credKey, []string{`{"userId":"` + fuzzNewUser + `","email":"new@fuzz.test","firstName":"New","lastName":"User"}`,
		`{"userId":"` + fuzzNewUser + `","phoneNumber":"0048123456789"}`}},
	{"POST", "/users/" + fuzzPhoneOnly + "/UpdateEmail", credKey, []string{`{"email":"phone-only@fuzz.test"}`, `{"email":"OWNER@fuzz.test"}`}},
	{"POST", "/users/" + fuzzPhoneOnly + "/UpdatePhoneNumber", credKey, []string{`{"phoneNumber":"+48500600700"}`, `{"phoneNumber":null}`}},
	{"POST", "/tenants/org-new/register", credAdmin, []string{`{"orgName":"New Org","ownerEmail":"boss@fuzz.test"}`, `{}`}},
	{"POST", "/api-keys", credAdmin, []string{`{"orgId":"spare","expiresAt":"2999-01-01T00:00:00Z","super":false}`, `{"orgId":"spare","expiresAt":"yesterday"}`}},
	{"POST", "/api-keys/spare/rotate", credAdmin, []string{`{"expiresAt":"2999-01-01T00:00:00Z"}`, `{}`}},
	{"POST", "/tenants/hooks/webhooks", credAdmin, []string{`{"url":"https://hooks.fuzz.test/in","events":["*"]}`,
		`{"url":"https://203.0.113.9/in","events":["LockCreated"],"secret":"whsec_MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIz","authType":"bearerToken","authValue":"t"}`}},
	{"PUT", "/tenants/hooks/webhooks/{hook}", credAdmin, []string{`{"rotateSecret":true}`,
		`{"events":["OwnerSet"],"authType":"apiKeyHeader","authHeader":"X-Key","authValue":"v"}`}},
	{"POST", "/tenants/hooks/webhooks/{hook}/replay", credAdmin, []string{`{"since":"2000-01-01T00:00:00Z"}`, `{"since":"soon"}`}},
	{"PATCH", "/webhooks/{hook}", credHook, []string{`{"url":"https://moved.fuzz.test/in"}`, `{"url":"http://127.0.0.1/"}`}},
	{"POST", "/webhooks/{hook}/replay", credHook, []string{`{"since":"2020-01-01T00:00:00Z"}`}},
}

func (fx *fuzzFixture) path(p string) string {
	return strings.NewReplacer("{ring}", fx.ring, "{hook}", fx.hook).Replace(p)
}

// FuzzCommandBodies sends a fuzzed JSON body to one command route (the
// first byte of the input picks it).
func FuzzCommandBodies(f *testing.F) {
	for i, r := range fuzzBodyRoutes {
		for _, s := range r.seeds {
			f.Add(byte(i), []byte(s))
		}
		f.Add(byte(i), []byte(`{bad`))
		f.Add(byte(i), []byte(`[]`))
	}
	fx := newFuzzFixture(f)
	f.Fuzz(func(t *testing.T, sel byte, body []byte) {
		r := fuzzBodyRoutes[int(sel)%len(fuzzBodyRoutes)]
		fx.check(t, r.method, fx.path(r.path), r.cred, body, false)
	})
}

// fuzzIDKind is what a path parameter holds, and so which values may get
// a 2xx.
type fuzzIDKind int

const (
	idLock  fuzzIDKind = iota // a canonical positive integer
	idUUID                    // a canonical (lower-case) UUID: user and ring ids
	idOther                   // webhook, delivery and org ids: no form rule
)

var fuzzCanonical = map[fuzzIDKind]*regexp.Regexp{
	idLock: regexp.MustCompile(`^[1-9][0-9]{0,18}$`),
	idUUID: regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`),
}

// fuzzIDRoute is a route with "{}" where the fuzzed segment goes; body is
// a JSON body the route accepts, with "{}" for the segment itself.
type fuzzIDRoute struct {
	method, path string
	kind         fuzzIDKind
	cred         fuzzCred
	body         string // "" sends none
}

var fuzzIDRoutes = []fuzzIDRoute{
	{"GET", "/locks/{}/basic-info", idLock, credSuper, ""},
	{"GET", "/locks/{}/details", idLock, credSuper, ""},
	{"GET", "/locks/{}/events", idLock, credSuper, ""},
	{"GET", "/locks/{}/debug/messages", idLock, credSuper, ""},
	{"GET", "/locks/{}/residents", idLock, credNone, ""},
	{"GET", "/locks/{}/doorbell/rings", idLock, credSuper, ""},
	{"POST", "/locks/{}/CreateLock", idLock, credSuper, `{"index":7,"uuid":"` + fuzzLock2UUID + `"}`},
	{"POST", "/locks/{}/SetOrganization", idLock, credSuper, `{"orgId":"acme"}`},
	{"POST", "/locks/{}/SetOwner", idLock, credSuper, `{"userId":"` + fuzzOwner + `"}`},
	{"POST", "/locks/{}/AddResident", idLock, credSuper, `{"name":"Owner","email":"owner@fuzz.test"}`},
	{"POST", "/locks/{}/RemoveResident", idLock, credSuper, `{"email":"nobody@fuzz.test"}`},
	{"POST", "/locks/{}/RingDoorbell", idLock, credSuper, `{"visitorName":"Courier"}`},
	{"GET", "/users/{}/profile", idUUID, credSuper, ""},
	{"GET", "/users/{}/phone-number", idUUID, credSuper, ""},
	{"GET", "/users/{}/notification-preferences", idUUID, credSuper, ""},
	{"GET", "/users/{}/notifications", idUUID, credSuper, ""},
	{"POST", "/users/{}/CreateUser", idUUID, credSuper, `{"userId":"{}"}`},
	{"POST", "/users/{}/UpdateEmail", idUUID, credSuper, `{"email":"someone@fuzz.test"}`},
	{"POST", "/users/{}/UpdatePhoneNumber", idUUID, credSuper, `{"phoneNumber":"+48500600700"}`},
	{"POST", "/users/{}/SetNotificationPreferences", idUUID, credSuper, `{"channels":{"email":false}}`},
	{"POST", "/doorbell/rings/{}/answer", idUUID, credOwner, ""},
	{"POST", "/doorbell/rings/{}/decline", idUUID, credOwner, ""},
	{"GET", "/webhooks/{}", idOther, credHook, ""},
	{"GET", "/webhooks/{}/secret", idOther, credHook, ""},
	{"GET", "/webhooks/{}/deliveries", idOther, credHook, ""},
	{"PATCH", "/webhooks/{}", idOther, credHook, `{"url":"https://moved.fuzz.test/in"}`},
	{"POST", "/webhooks/{}/verify", idOther, credHook, ""},
	{"POST", "/webhooks/{}/replay", idOther, credHook, `{"since":"2020-01-01T00:00:00Z"}`},
	{"POST", "/webhooks/{hook}/deliveries/{}/redeliver", idOther, credHook, ""},
	{"GET", "/tenants/hooks/webhooks/{}", idOther, credAdmin, ""},
	{"PUT", "/tenants/hooks/webhooks/{}", idOther, credAdmin, `{"events":["*"]}`},
	{"POST", "/tenants/{}/register", idOther, credAdmin, `{"orgName":"Fuzz Org"}`},
	{"GET", "/tenants/{}/webhooks", idOther, credAdmin, ""},
	{"POST", "/tenants/{}/webhooks", idOther, credAdmin, `{"url":"https://hooks.fuzz.test/in"}`},
	{"POST", "/api-keys/{}/rotate", idOther, credAdmin, ""},
}

// fuzzIDSeeds are segments worth starting from for each kind.
var fuzzIDSeeds = map[fuzzIDKind][]string{
	idLock: {"1", "2", "+1", "01", "007", "1e3", "0x1", "-5", "0", " 1", "1 ", "9223372036854775807", "9223372036854775808",
		"١", "1.0", "..", ".", "", "1/../2", "1%2F2", "%31"},
	idUUID: {fuzzOwner, strings.ToUpper(fuzzOwner), "{" + fuzzOwner + "}", strings.ReplaceAll(fuzzOwner, "-", ""),
		"urn:uuid:" + fuzzOwner, fuzzOwner + "\n", " " + fuzzOwner, fuzzPhoneOnly, "..", "../..", "not-a-uuid", ""},
	idOther: {"spare", "acme", "x", "..", "", "1", "-1", "%00", "org/../acme", "ACME", " acme", strings.Repeat("a", 300)},
}

// fuzzLenientIDs tolerates the id forms the server takes before issue
// 10's id rules (a lock id strconv.ParseInt reads, such as "+1" or "01";
// a UUID in upper case). Set it to false once those rules are merged:
// the fuzz target then holds the server to canonical ids only.
const fuzzLenientIDs = false

func fuzzLenientID(kind fuzzIDKind, seg string) bool {
	if !fuzzLenientIDs {
		return false
	}
	switch kind {
	case idLock:
		n, err := strconv.ParseInt(seg, 10, 64)
		return err == nil && n > 0
	case idUUID:
		return domain.ValidUUID(seg)
	}
	return false
}

// FuzzPathIDs puts a fuzzed path segment where a route takes a lock,
// user, ring, webhook, delivery or org id (the first byte of the input
// picks the route). Besides check's property, a 2xx names a lock by a
// canonical positive integer and a user or ring by a canonical UUID, and
// a GET stores nothing.
func FuzzPathIDs(f *testing.F) {
	// Every seed on the first route of its kind, two on the others: a
	// short baseline leaves the bounded run its time for fuzzing.
	seeded := map[fuzzIDKind]bool{}
	for i, r := range fuzzIDRoutes {
		seeds := fuzzIDSeeds[r.kind]
		if seeded[r.kind] {
			seeds = seeds[:2]
		}
		seeded[r.kind] = true
		for _, s := range seeds {
			f.Add(byte(i), s)
		}
	}
	fx := newFuzzFixture(f)
	f.Fuzz(func(t *testing.T, sel byte, seg string) {
		r := fuzzIDRoutes[int(sel)%len(fuzzIDRoutes)]
		path := strings.Replace(fx.path(r.path), "{}", url.PathEscape(seg), 1)
		var body []byte
		if r.body != "" {
			quoted, _ := json.Marshal(seg)
			body = []byte(strings.ReplaceAll(r.body, `"{}"`, string(quoted)))
		}
		status := fx.check(t, r.method, path, r.cred, body, r.method == "GET")
		if re := fuzzCanonical[r.kind]; re != nil && status < 300 && !re.MatchString(seg) && !fuzzLenientID(r.kind, seg) {
			t.Fatalf("%s %s: status %d for the non-canonical id %q", r.method, path, status, seg)
		}
	})
}
