package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spkey-dev/spkey/internal/app"
)

// -wrk: the headline scenarios a, b and c driven by wrk (Debian's wrk 4,
// a C load generator) as well as by the in-process Go clients, against
// the same servers, so the two can be compared (issue 12: they should
// agree within noise). wrk runs after the rounds, -rounds times per
// scenario, alternating a, b, c and c, b, a like the rounds.
const (
	wrkConns   = 16
	wrkThreads = 2
)

func wrkName(sc string) string { return "wrk:" + sc }

// wrkTargets is the servers of a, b and c.
type wrkTargets struct {
	bare *bareServer
	sp   *spkeyServer
}

// wrkResult is one wrk run.
type wrkResult struct {
	scenario string
	round    int
	rate     float64 // requests/s, as wrk counts them (every answer, 2xx or not)
	p50, p99 time.Duration
	non2xx   int
	errs     string // wrk's socket errors line, if any
}

// wrkRuns runs wrk against a, b and c.
func wrkRuns(ctx context.Context, c benchConfig, t wrkTargets, progress func(string, ...any)) ([]wrkResult, error) {
	bin, err := exec.LookPath("wrk")
	if err != nil {
		return nil, fmt.Errorf("bench: -wrk: %w (Debian: apt-get install wrk)", err)
	}
	dir, err := os.MkdirTemp(c.dir, "spkey-bench-wrk-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	secs := max(1, int(math.Ceil(c.d.Seconds())))
	type run struct {
		sc  string
		url string
		lua func() (string, error)
	}
	runs := []run{}
	if c.wants(scA) {
		runs = append(runs, run{sc: scA, url: t.bare.url})
	}
	if c.wants(scB) {
		runs = append(runs, run{sc: scB, url: t.sp.residentsURL})
	}
	if c.wants(scC) {
		runs = append(runs, run{sc: scC, url: t.sp.base, lua: func() (string, error) {
			// Users of their own for this run, none a resident yet: wrk
			// stops with requests in flight, which the server may still
			// commit after wrk has exited, so where a run leaves a lock
			// is not known to the next one.
			users, err := wrkUsers(ctx, t.sp, len(t.sp.users))
			if err != nil {
				return "", err
			}
			tog := newTenantToggler(benchTenant{s: t.sp, json: t.sp.json, firstLock: 1, users: users}, len(users), 1)
			p := filepath.Join(dir, "c.lua")
			return p, os.WriteFile(p, []byte(tog.wrkScript(t.sp.apiKey)), 0o600)
		}})
	}
	var out []wrkResult
	for r := 1; r <= c.rounds; r++ {
		order := runs
		if r%2 == 0 {
			order = make([]run, len(runs))
			for i, x := range runs {
				order[len(runs)-1-i] = x
			}
		}
		for _, x := range order {
			args := []string{"-t", strconv.Itoa(wrkThreads), "-c", strconv.Itoa(wrkConns), "-d", strconv.Itoa(secs) + "s", "--timeout", "10s", "--latency"}
			if x.lua != nil {
				script, err := x.lua()
				if err != nil {
					return nil, err
				}
				args = append(args, "-s", script)
			}
			args = append(args, x.url)
			var stdout, stderr bytes.Buffer
			cmd := exec.CommandContext(ctx, bin, args...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				return nil, fmt.Errorf("bench: wrk %s: %w: %s", x.sc, err, stderr.String())
			}
			res, err := parseWrk(stdout.String())
			if err != nil {
				return nil, fmt.Errorf("bench: wrk %s: %w:\n%s", x.sc, err, stdout.String())
			}
			res.scenario, res.round = x.sc, r
			progress("round %d %-26s %9.0f req/s  p50 %s  p99 %s  non-2xx %d %s", r, wrkName(x.sc), res.rate, ms(res.p50), ms(res.p99), res.non2xx, res.errs)
			out = append(out, res)
		}
	}
	return out, nil
}

var (
	wrkRateRE  = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkPctRE   = regexp.MustCompile(`(?m)^\s+(50|99)(?:\.000)?%\s+([0-9.]+)(us|ms|s)\s*$`)
	wrkNon2RE  = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	wrkSockeRE = regexp.MustCompile(`Socket errors:[^\n]*`)
)

func parseWrk(s string) (wrkResult, error) {
	var r wrkResult
	m := wrkRateRE.FindStringSubmatch(s)
	if m == nil {
		return r, fmt.Errorf("no Requests/sec in wrk's output")
	}
	r.rate, _ = strconv.ParseFloat(m[1], 64)
	for _, m := range wrkPctRE.FindAllStringSubmatch(s, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[m[3]]
		d := time.Duration(v * float64(unit))
		if m[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	if m := wrkNon2RE.FindStringSubmatch(s); m != nil {
		r.non2xx, _ = strconv.Atoi(m[1])
	}
	r.errs = wrkSockeRE.FindString(s)
	return r, nil
}

// wrkUsers creates n users of the bench tenant in-process, one a lock.
func wrkUsers(ctx context.Context, sp *spkeyServer, n int) ([]string, error) {
	users := make([]string, n)
	tenant := app.Call{P: app.Principal{Kind: app.TenantCaller, OrgID: "bench-org"}}
	const workers = 8
	err := parallel(ctx, workers, func(w int) error {
		for i := w; i < n; i += workers {
			users[i] = app.NewUUID()
			if _, err := sp.svc.CreateUser(ctx, tenant, users[i], app.CreateUserInput{UserID: users[i], Email: "wrk-" + users[i] + "@example.com"}); err != nil {
				return fmt.Errorf("bench: wrk user: %w", err)
			}
		}
		return nil
	})
	return users, err
}

// wrkScript is a wrk Lua script for scenario c: each of wrk's threads owns
// the locks i with i % threads == its number and walks them round robin,
// adding the lock's user when it is not a resident and removing it when
// it is, from the state the toggler records now.
func (t *residentToggler) wrkScript(apiKey string) string {
	var b strings.Builder
	b.WriteString("-- generated by spkey-bench -wrk: scenario c (AddResident/RemoveResident)\nlocal locks = {\n")
	for i := range t.present {
		fmt.Fprintf(&b, "  {%q, %q, %q, %q, %v},\n", pathOf(t.addURL[i]), pathOf(t.rmURL[i]), t.add[i], t.rm[i], t.present[i])
	}
	fmt.Fprintf(&b, `}
local threads = %d
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
local headers = {["Content-Type"] = "application/json", ["X-API-Key"] = %q}
local pos
local calls = 0
function request()
  calls = calls + 1
  if id == 0 and calls == 1 then
    -- wrk calls request() once on thread 0 to check the request and does
    -- not send it: a read, so that no lock's turn is spent on it.
    return wrk.format("GET", "/locks/1/residents")
  end
  if pos == nil then pos = id + 1 end
  local l = locks[pos]
  pos = pos + threads
  if pos > #locks then pos = id + 1 end
  local path, body
  if l[5] then path, body = l[2], l[4] else path, body = l[1], l[3] end
  l[5] = not l[5]
  return wrk.format("POST", path, headers, body)
end
`, wrkThreads, apiKey)
	return b.String()
}

func pathOf(url string) string {
	if i := strings.Index(url, "://"); i >= 0 {
		if j := strings.Index(url[i+3:], "/"); j >= 0 {
			return url[i+3+j:]
		}
	}
	return url
}

// wrkReport prints wrk's medians beside the in-process generator's.
func wrkReport(w io.Writer, meds map[string]med, runs []wrkResult) {
	if len(runs) == 0 {
		return
	}
	fmt.Fprintf(w, "\nwrk (%d connections, %d threads) against the same servers, after the rounds; in-process = the medians above (-conns clients)\n", wrkConns, wrkThreads)
	for _, sc := range []string{scA, scB, scC} {
		var rates, p50, p99 []float64
		non2xx, errs := 0, ""
		for _, r := range runs {
			if r.scenario != sc {
				continue
			}
			rates, p50, p99 = append(rates, r.rate), append(p50, r.p50.Seconds()), append(p99, r.p99.Seconds())
			non2xx += r.non2xx
			if r.errs != "" {
				errs = r.errs
			}
		}
		if len(rates) == 0 {
			continue
		}
		in := meds[sc]
		ratio := 0.0
		if in.rate > 0 {
			ratio = median(rates) / in.rate
		}
		fmt.Fprintf(w, "  %-18s wrk %6.0f req/s (p50 %s, p99 %s, non-2xx %d)   in-process %6.0f req/s (p50 %s, p99 %s)   wrk/in-process = %.2f %s\n",
			sc, median(rates), msf(median(p50)), msf(median(p99)), non2xx, in.rate, msf(in.p50), msf(in.p99), ratio, errs)
	}
}
