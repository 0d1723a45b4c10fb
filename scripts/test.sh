#!/usr/bin/env bash
# scripts/test.sh — the ONE command that runs spkey's whole test suite.
#
#   bash scripts/test.sh [go test flags] [packages]
#
# Phases:
#   1. postgres  — provide a throwaway database and export
#                  SPKEY_TEST_POSTGRES_URL and SPKEY_TEST_REQUIRE_POSTGRES=1.
#                  * SPKEY_TEST_POSTGRES_URL already set: used as is.
#                  * else a server answers on 127.0.0.1:5432: a fresh database
#                    spkey_test_<random> is created there (trust auth, user
#                    postgres then root) and dropped on exit.
#                  * else a throwaway cluster is initdb'ed in a temp dir on a
#                    free port and stopped + removed on exit.
#                  PostgreSQL is apt-get installed if its binaries are missing.
#   2. chromium  — ensure /usr/bin/chromium (apt-get install if missing) and
#                  export SPKEY_TEST_CHROMIUM (chromedp tests use it).
#   3. gofmt, go vet, staticcheck (pinned in go.mod as a tool).
#   4. go test -race -count=1 -timeout 20m, with "$@" passed through. If no
#      package pattern (./..., ../x, github.com/...) is given, ./... is used.
#   5. fuzz      — only when no package pattern is given: each fuzz target
#                  runs for a bounded time, one `go test -fuzz` per target
#                  (FuzzNormalizeEmail, FuzzNormalizePhone, FuzzNormalizeUUID
#                  in ./internal/domain for 10s each, FuzzParseID,
#                  FuzzCanonicalUUID and FuzzCheckText for 5s each;
#                  FuzzUnmarshalStrict in ./internal/httpapi for 10s; FuzzCommandBodies and
#                  FuzzPathIDs in ./internal/httpapi for 25s each). A finding
#                  fails the script and names the input file go test wrote
#                  under the package's testdata/fuzz/<FuzzName>/ and the
#                  command that re-runs it. A failure with no input whose
#                  only message is "context deadline exceeded" is Go 1.26's
#                  fuzz-coordinator race (go.dev/issue/75804), logged and
#                  not counted. (Plain `go test` in phase 4
#                  already runs every seed and committed corpus file.)
#
# Knobs (environment):
#   SPKEY_TEST_POSTGRES_URL=...   use this database, skip provisioning.
#   SPKEY_TEST_FORCE_OWN_PG=1     always start a throwaway cluster, even if a
#                                 server answers on 5432 or a URL is set
#                                 (used to test that path).
#   SPKEY_TEST_SKIP_GO=1          only run the postgres and chromium phases
#                                 (skip phases 3 and 4); prints the exported
#                                 variables. Meant for testing this script.
#   SPKEY_TEST_HOLD='CMD'         with SPKEY_TEST_SKIP_GO=1: run CMD (via bash)
#                                 while the database still exists, e.g.
#                                 'psql "$SPKEY_TEST_POSTGRES_URL" -c "select 1"'.
#   SPKEY_TEST_CHROMIUM=/path     use this browser binary instead of
#                                 /usr/bin/chromium.
#   SPKEY_TEST_FUZZTIME=30s       run every fuzz target this long (a Go
#                                 duration, or Nx for N inputs) instead of
#                                 the defaults above; 0 skips phase 5.
set -euo pipefail

cd "$(dirname "$0")/.."

log() { printf '%s\n' "$*" >&2; }
die() { printf 'test.sh: ERROR: %s\n' "$*" >&2; exit 1; }

# --- timing ---------------------------------------------------------------
now_ms() { date +%s%3N; }
T_START=$(now_ms)
PHASE_NAME=""
PHASE_T0=0
TIMINGS=()
phase_end() {
	if [[ -n "$PHASE_NAME" ]]; then
		local ms=$(($(now_ms) - PHASE_T0))
		TIMINGS+=("$PHASE_NAME $((ms / 1000)).$(printf '%03d' $((ms % 1000)))s")
	fi
	PHASE_NAME=""
}
phase() { # phase NAME [detail...]
	phase_end
	PHASE_NAME=$1
	PHASE_T0=$(now_ms)
	shift
	if (($#)); then log "== $PHASE_NAME: $*"; else log "== $PHASE_NAME"; fi
}

# --- cleanup --------------------------------------------------------------
PG_DROP_DB=""     # database to drop on exit (on an existing server)
PG_DROP_ARGS=()   # psql connection args for dropping it
PG_OWN_DIR=""     # temp dir of our own cluster
PG_OWN_USER=""    # OS user running our own cluster ("" = current user)
PGBIN=""

as_pg_user() { # run a command as the cluster's OS user
	if [[ -n "$PG_OWN_USER" ]]; then
		runuser -u "$PG_OWN_USER" -- "$@"
	else
		"$@"
	fi
}

cleanup() {
	local rc=$?
	set +e
	if [[ -n "$PG_DROP_DB" ]]; then
		psql "${PG_DROP_ARGS[@]}" -c "DROP DATABASE IF EXISTS \"$PG_DROP_DB\" WITH (FORCE)" >/dev/null 2>&1 ||
			psql "${PG_DROP_ARGS[@]}" -c "DROP DATABASE IF EXISTS \"$PG_DROP_DB\"" >/dev/null 2>&1 ||
			log "test.sh: warning: could not drop database $PG_DROP_DB"
	fi
	if [[ -n "$PG_OWN_DIR" && -d "$PG_OWN_DIR" ]]; then
		if [[ -f "$PG_OWN_DIR/data/postmaster.pid" ]]; then
			(cd "$PG_OWN_DIR" && as_pg_user "$PGBIN/pg_ctl" -D "$PG_OWN_DIR/data" -m immediate -w -t 20 stop) >/dev/null 2>&1
			if [[ -f "$PG_OWN_DIR/data/postmaster.pid" ]]; then
				local pid
				pid=$(head -n1 "$PG_OWN_DIR/data/postmaster.pid" 2>/dev/null)
				[[ "$pid" =~ ^[0-9]+$ ]] && kill -9 "$pid" 2>/dev/null
			fi
		fi
		rm -rf "$PG_OWN_DIR"
	fi
	return "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- apt ------------------------------------------------------------------
APT_UPDATED=0
apt_install() { # apt_install PKG... ; returns non-zero on failure
	local -a sudo=()
	if ((EUID != 0)); then
		if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
			sudo=(sudo -n)
		else
			log "test.sh: cannot apt-get install $* (not root and no passwordless sudo)"
			return 1
		fi
	fi
	command -v apt-get >/dev/null 2>&1 || { log "test.sh: apt-get not found"; return 1; }
	log "   apt-get install $*"
	local -a cmd=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq -y
		-o Dpkg::Use-Pty=0 install --no-install-recommends "$@")
	if "${cmd[@]}" >/tmp/spkey-apt.$$.log 2>&1; then
		rm -f /tmp/spkey-apt.$$.log
		return 0
	fi
	if ((APT_UPDATED == 0)); then
		APT_UPDATED=1
		log "   apt-get update"
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq update >>/tmp/spkey-apt.$$.log 2>&1 || true
		if "${cmd[@]}" >>/tmp/spkey-apt.$$.log 2>&1; then
			rm -f /tmp/spkey-apt.$$.log
			return 0
		fi
	fi
	tail -n 20 /tmp/spkey-apt.$$.log >&2
	rm -f /tmp/spkey-apt.$$.log
	return 1
}

# --- postgres -------------------------------------------------------------
find_pgbin() { # sets PGBIN to the newest /usr/lib/postgresql/*/bin with initdb
	PGBIN=""
	local d
	while IFS= read -r d; do
		[[ -x "$d/initdb" && -x "$d/pg_ctl" ]] && PGBIN=$d
	done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V)
	if [[ -z "$PGBIN" ]] && command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
		PGBIN=$(dirname "$(readlink -f "$(command -v initdb)")")
	fi
	[[ -n "$PGBIN" ]]
}

ensure_pg_binaries() {
	if find_pgbin && command -v psql >/dev/null 2>&1 && command -v pg_isready >/dev/null 2>&1; then
		return 0
	fi
	# psql/pg_isready may exist only in the versioned bin dir.
	if [[ -n "$PGBIN" && -x "$PGBIN/psql" && -x "$PGBIN/pg_isready" ]]; then
		PATH="$PATH:$PGBIN"
		return 0
	fi
	log "   PostgreSQL binaries missing; installing"
	apt_install postgresql ||
		die "PostgreSQL is not installed and 'apt-get install postgresql' failed. Install PostgreSQL (initdb, pg_ctl, psql, pg_isready) or set SPKEY_TEST_POSTGRES_URL."
	find_pgbin || die "PostgreSQL installed but initdb/pg_ctl not found under /usr/lib/postgresql/*/bin"
	command -v psql >/dev/null 2>&1 || PATH="$PATH:$PGBIN"
	command -v pg_isready >/dev/null 2>&1 || PATH="$PATH:$PGBIN"
}

random_suffix() { od -An -N6 -tx1 /dev/urandom | tr -d ' \n'; }

free_port() {
	if command -v python3 >/dev/null 2>&1; then
		python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()' && return 0
	fi
	local p i
	for ((i = 0; i < 200; i++)); do
		p=$((20000 + RANDOM % 30000))
		if command -v ss >/dev/null 2>&1; then
			[[ -z "$(ss -Htln "sport = :$p" 2>/dev/null)" ]] && { echo "$p"; return 0; }
		elif ! (: <"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# Create a database on an existing server at 127.0.0.1:5432.
use_existing_server() {
	local db u
	db="spkey_test_$(random_suffix)"
	for u in postgres root; do
		if psql -X -w -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p 5432 -U "$u" -d postgres \
			-c "CREATE DATABASE \"$db\"" >/dev/null 2>&1; then
			PG_DROP_DB=$db
			PG_DROP_ARGS=(-X -w -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p 5432 -U "$u" -d postgres)
			export SPKEY_TEST_POSTGRES_URL="postgres://$u@127.0.0.1:5432/$db?sslmode=disable"
			log "   created database $db on 127.0.0.1:5432 as $u"
			return 0
		fi
	done
	log "   server on 127.0.0.1:5432 refused CREATE DATABASE for users postgres and root (needs trust auth)"
	return 1
}

# Start a throwaway cluster in a temp dir on a free port.
start_own_cluster() {
	if ((EUID == 0)); then
		if id -u postgres >/dev/null 2>&1; then
			PG_OWN_USER=postgres
		else
			PG_OWN_USER=spkeytest
			id -u "$PG_OWN_USER" >/dev/null 2>&1 ||
				useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$PG_OWN_USER" ||
				die "running as root and could not create a system user for initdb"
		fi
		command -v runuser >/dev/null 2>&1 || die "running as root but runuser is missing (needed to run initdb as $PG_OWN_USER)"
	fi
	# /tmp (not $TMPDIR): must be reachable by the cluster user; also keeps
	# the unix socket path short.
	PG_OWN_DIR=$(mktemp -d /tmp/spkey-pg.XXXXXX)
	[[ -n "$PG_OWN_USER" ]] && chown "$PG_OWN_USER" "$PG_OWN_DIR"
	local dir=$PG_OWN_DIR
	(cd "$dir" && as_pg_user "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C --no-sync) \
		>"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
	local port attempt
	for attempt in 1 2 3; do
		port=$(free_port) || die "could not find a free TCP port"
		if (cd "$dir" && as_pg_user "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
			-o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
			start) >/dev/null 2>&1; then
			local db
			db="spkey_test_$(random_suffix)"
			psql -X -w -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres \
				-c "CREATE DATABASE \"$db\"" >/dev/null ||
				die "throwaway cluster started but CREATE DATABASE failed"
			export SPKEY_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/$db?sslmode=disable"
			log "   throwaway cluster $dir on port $port (user ${PG_OWN_USER:-$(id -un)}), database $db"
			return 0
		fi
		log "   pg_ctl start on port $port failed (attempt $attempt)"
	done
	tail -n 20 "$dir/server.log" >&2 || true
	die "could not start a throwaway PostgreSQL cluster (see log above)"
}

setup_postgres() {
	if [[ -n "${SPKEY_TEST_POSTGRES_URL:-}" && "${SPKEY_TEST_FORCE_OWN_PG:-}" != 1 ]]; then
		phase postgres "using SPKEY_TEST_POSTGRES_URL from environment"
	else
		phase postgres "provisioning"
		ensure_pg_binaries
		if [[ "${SPKEY_TEST_FORCE_OWN_PG:-}" != 1 ]] && pg_isready -q -h 127.0.0.1 -p 5432 -t 3 >/dev/null 2>&1 &&
			use_existing_server; then
			:
		else
			[[ "${SPKEY_TEST_FORCE_OWN_PG:-}" == 1 ]] && log "   SPKEY_TEST_FORCE_OWN_PG=1: starting own cluster"
			start_own_cluster
		fi
	fi
	export SPKEY_TEST_REQUIRE_POSTGRES=1
}

# --- chromium -------------------------------------------------------------
setup_chromium() {
	phase chromium
	local bin=${SPKEY_TEST_CHROMIUM:-}
	if [[ -z "$bin" ]]; then
		if [[ -x /usr/bin/chromium ]]; then
			bin=/usr/bin/chromium
		elif command -v chromium >/dev/null 2>&1; then
			bin=$(command -v chromium)
		else
			log "   chromium missing; installing"
			apt_install chromium fonts-liberation ||
				die "Chromium is not installed and 'apt-get install chromium' failed. Install chromium (/usr/bin/chromium) or set SPKEY_TEST_CHROMIUM."
			bin=/usr/bin/chromium
		fi
	fi
	[[ -x "$bin" ]] || die "Chromium binary $bin is missing or not executable"
	export SPKEY_TEST_CHROMIUM=$bin
	log "   $bin ($("$bin" --version 2>/dev/null | head -n1 || echo 'version unknown'))"
}

# --- go checks and tests --------------------------------------------------
run_checks() {
	command -v go >/dev/null 2>&1 || die "go is not on PATH"

	phase gofmt
	local unformatted
	unformatted=$(gofmt -l .)
	if [[ -n "$unformatted" ]]; then
		log "gofmt: these files need formatting (run 'gofmt -w'):"
		log "$unformatted"
		exit 1
	fi

	phase vet
	go vet ./...

	phase staticcheck
	go tool -n staticcheck >/dev/null 2>&1 ||
		die "'go tool staticcheck' is not available; pin it with: go get -tool honnef.co/go/tools/cmd/staticcheck@v0.8.2"
	go tool staticcheck ./...
}

run_tests() {
	phase test
	# -race needs cgo and a C compiler.
	if [[ "$(go env CGO_ENABLED)" != 1 ]] || ! command -v "$(go env CC)" >/dev/null 2>&1; then
		log "   -race needs a C compiler; installing gcc"
		apt_install gcc libc6-dev || die "go test -race needs cgo and a C compiler (gcc); install gcc"
		export CGO_ENABLED=1
	fi
	local have_pkg=0 a
	for a in "$@"; do
		case $a in
		. | ./* | ../* | github.com/*) have_pkg=1 ;;
		esac
	done
	local -a pkgs=()
	((have_pkg)) || pkgs=(./...)
	go test -race -count=1 -timeout 20m "$@" "${pkgs[@]}"
}

# FUZZ_TARGETS: "package target default-time", one per `go test -fuzz` run
# (-fuzz takes one target per package).
FUZZ_TARGETS=(
	"./internal/domain FuzzNormalizeEmail 10s"
	"./internal/domain FuzzNormalizePhone 10s"
	"./internal/domain FuzzNormalizeUUID 10s"
	"./internal/domain FuzzParseID 5s"
	"./internal/domain FuzzCanonicalUUID 5s"
	"./internal/domain FuzzCheckText 5s"
	"./internal/httpapi FuzzUnmarshalStrict 10s"
	"./internal/httpapi FuzzCommandBodies 25s"
	"./internal/httpapi FuzzPathIDs 25s"
)

run_fuzz() {
	local ft=${SPKEY_TEST_FUZZTIME:-}
	if [[ "$ft" == 0 ]]; then
		log "== fuzz: skipped (SPKEY_TEST_FUZZTIME=0)"
		return 0
	fi
	local a
	for a in "$@"; do
		case $a in
		. | ./* | ../* | github.com/*)
			log "== fuzz: skipped (package patterns given; the fuzz phase runs with the whole suite)"
			return 0
			;;
		esac
	done
	phase fuzz "${#FUZZ_TARGETS[@]} targets${ft:+, $ft each}"
	local entry pkg target dur out rc
	out=$(mktemp "${TMPDIR:-/tmp}/spkey-fuzz.XXXXXX")
	for entry in "${FUZZ_TARGETS[@]}"; do
		read -r pkg target dur <<<"$entry"
		dur=${ft:-$dur}
		log "   $target ($pkg, $dur)"
		rc=0
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$dur" "$pkg" >"$out" 2>&1 || rc=$?
		if ((rc != 0)); then
			local written
			written=$(sed -n 's/.*Failing input written to \(testdata\/fuzz\/[^ ]*\).*/\1/p' "$out" | head -n1)
			if [[ -z "$written" ]] && grep -q '^    context deadline exceeded$' "$out" && ! grep -q -e 'panic:' -e '--- FAIL: .*/' "$out"; then
				# Go 1.26's fuzz coordinator can report its own -fuzztime
				# deadline as a failure, with no input (go.dev/issue/75804,
				# fixed in Go 1.27): not a finding.
				log "   $target: go's fuzz coordinator reported its own deadline (go.dev/issue/75804), no failing input: not a finding"
				continue
			fi
			cat "$out" >&2
			if [[ -n "$written" ]]; then
				log "test.sh: fuzz finding in $target: the input is in ${pkg#./}/$written"
				log "   re-run it with: go test -run '^${target}/${written##*/}\$' $pkg"
			fi
			rm -f "$out"
			die "fuzz target $target failed"
		fi
	done
	rm -f "$out"
}

setup_postgres
setup_chromium
if [[ "${SPKEY_TEST_SKIP_GO:-}" == 1 ]]; then
	phase_end
	log "== SPKEY_TEST_SKIP_GO=1: skipping gofmt, vet, staticcheck and tests"
	printf 'SPKEY_TEST_POSTGRES_URL=%s\nSPKEY_TEST_REQUIRE_POSTGRES=%s\nSPKEY_TEST_CHROMIUM=%s\n' \
		"$SPKEY_TEST_POSTGRES_URL" "$SPKEY_TEST_REQUIRE_POSTGRES" "$SPKEY_TEST_CHROMIUM"
	# SPKEY_TEST_HOLD=CMD: run CMD while the database is still up (script self-test).
	if [[ -n "${SPKEY_TEST_HOLD:-}" ]]; then bash -c "$SPKEY_TEST_HOLD"; fi
else
	run_checks
	run_tests "$@"
	run_fuzz "$@"
	phase_end
fi
summary=""
for t in "${TIMINGS[@]}"; do summary+="${summary:+, }$t"; done
log "== ok ($summary; total $((($(now_ms) - T_START) / 1000))s)"
