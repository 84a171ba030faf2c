#!/usr/bin/env bash
# keel against a bare baseline, on loopback, in one run: requests/s, p50, p99 and peak RSS of
# each request on each server, and the keel/baseline ratio (docs/performance.md).
#
# Usage: bench/load.sh [seconds] [threads] [connections] [runs]   (defaults: 10 1 64 1)
#        KEEL_BIN=path/to/keel bench/load.sh …                     (load that build of keel)
#
# With runs > 1 the whole sequence below is repeated and the table gives, per request, the
# median of the runs (ratio, req/s, p50, p99, RSS) and the largest peak, with each run's ratio
# after it: on a shared machine one run's ratio moves by ±0.1.
#
# 1. The baseline (bench/baseline: hyper + rusqlite, no keel code, 1,000 items as ready JSON)
#    is loaded on GET /api/health and POST /api/getData {"limit":100}.
# 2. keel runs as in production — KEEL_ENV=production, the JSON request log on stdout (sent to
#    /dev/null), every rate limit on (raised by configuration so the load is not refused), the
#    session loaded and checked on every request. A user registers; 1,000 items are created
#    through POST /api/items; health and getData are loaded like the baseline; 9,000 more
#    items are created and GET /api/items?limit=100 (with its `total` over 10,000) is loaded.
# 3. The baseline is loaded on health once more, sending every header keel's health response
#    carries (captured from keel with curl; `x-request-id` fresh per response): that ratio
#    separates what keel's response bytes cost (the load generator parses them too) from what
#    keel's own work costs.
# Peak RSS is the server's VmHWM, reset before each load (so seeding does not count). The
# script also prints keel's RSS 10 s into each load and at its end: with seconds ≥ 60 that is
# the "no growth" check. It fails if a load answers anything but 2xx.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
source bench/common.sh

DURATION="${1:-10}"
THREADS="${2:-1}"
CONNECTIONS="${3:-64}"
RUNS="${4:-1}"
case "$RUNS" in '' | *[!0-9]* | 0) echo "runs must be a whole number ≥ 1, not '$RUNS'" >&2; exit 2 ;; esac
BASELINE_PORT="${KEEL_BENCH_BASELINE_PORT:-28081}"
PORT="${KEEL_BENCH_PORT:-28080}"

need_package wrk wrk

TARGET="${CARGO_TARGET_DIR:-target}/release"
# KEEL_BIN=PATH loads that keel binary (to compare two builds); without it keel is built as it
# ships (scripts/build-release).
cargo build --release --quiet -p keel-baseline
build_keel
# The code layout (crates/keel-cli/build.rs) names functions by symbol; after a dependency
# update most names change and resident code grows back by ~8 MiB until bench/layout.sh is rerun.
ORDER=crates/keel-cli/symbol-order.txt
if [ -f "$ORDER" ] && command -v nm >/dev/null 2>&1; then
    # Rust's symbols only: the C ones (SQLite, mimalloc, libc's) keep their names.
    listed="$(grep -c '^_ZN\|^_R' "$ORDER" || true)"
    found="$(nm "$KEEL_BIN" 2>/dev/null |
        awk 'NR == FNR { have[$3] = 1; next } /^_ZN|^_R/ && ($0 in have)' - "$ORDER" | wc -l)"
    echo "code layout: $found of the $listed Rust functions $ORDER lists are in this build" >&2
    if [ "$((found * 100))" -lt "$((listed * 95))" ]; then
        echo "warning: the code layout is stale; bench/layout.sh remakes it (docs/performance.md)" >&2
    fi
fi
WORK="$(mktemp -d)"
OUT="$WORK/wrk.out"
trap 'stop_server; rm -rf "$WORK"' EXIT

kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$SERVER_PID/status"; }
# The host's steal time so far, all CPUs, in clock ticks (/proc/stat's 8th cpu field): time
# this VM's CPUs were ready to run but the hypervisor ran something else. A load during which
# it grows was slowed by the host, not by the server.
steal_ticks() { awk '$1 == "cpu" {print $9}' /proc/stat; }
TICKS_PER_S="$(getconf CLK_TCK)"
STEALS="$WORK/steals"
: >"$STEALS"

# Results, one line per (run, server, request): run|server|name|rps|p50|p99|peak MiB|rss@10s MiB|rss@end MiB
RESULTS="$WORK/results"
: >"$RESULTS"

# load SERVER NAME [wrk arguments…]: one wrk run against the running server.
load() {
    local server="$1" name="$2"; shift 2
    echo 5 >"/proc/$SERVER_PID/clear_refs"   # resets VmHWM: the peak of this load only
    local rss10=""
    ( sleep 10; awk '$1 == "VmRSS:" {print $2}' "/proc/$SERVER_PID/status" >"$WORK/rss10" ) &
    local sampler=$!
    local steal_before; steal_before="$(steal_ticks)"
    wrk --latency -t "$THREADS" -c "$CONNECTIONS" -d "${DURATION}s" "$@" >"$OUT"
    local steal_ms=$((($(steal_ticks) - steal_before) * 1000 / TICKS_PER_S))
    local rss_end; rss_end="$(kib VmRSS)"
    local peak; peak="$(kib VmHWM)"
    if kill -0 "$sampler" 2>/dev/null; then kill "$sampler" 2>/dev/null || true; fi
    wait "$sampler" 2>/dev/null || true
    if [ -s "$WORK/rss10" ]; then rss10="$(cat "$WORK/rss10")"; rm -f "$WORK/rss10"; fi
    local rps p50 p99 bad
    rps="$(awk '/^Requests\/sec:/ {print $2}' "$OUT")"
    p50="$(awk '$1 == "50%" {print $2}' "$OUT")"
    p99="$(awk '$1 == "99%" {print $2}' "$OUT")"
    bad="$(awk '/Non-2xx or 3xx responses:/ {print $5}' "$OUT")"
    if [ -n "$bad" ] && [ "$bad" != 0 ]; then
        echo "$server $name: $bad responses were not 2xx" >&2; cat "$OUT" >&2; exit 1
    fi
    printf '%s|%s|%s|%s|%s|%s|%s|%s|%s\n' "$RUN" "$server" "$name" "$rps" "$p50" "$p99" \
        "$((peak / 1024))" "${rss10:+$((rss10 / 1024))}" "$((rss_end / 1024))" >>"$RESULTS"
    printf '%-9s %-34s %10s req/s  p50 %8s  p99 %8s  peak RSS %4s MiB  host steal %5s ms\n' \
        "$server" "$name" "$rps" "$p50" "$p99" "$((peak / 1024))" "$steal_ms"
    # A tenth of a second is more than a quiet host steals in a load (0–90 ms here).
    if [ "$steal_ms" -ge 100 ]; then
        echo "run $RUN: $server $name: the host stole ${steal_ms} ms of CPU during it" >>"$STEALS"
    fi
}

for RUN in $(seq 1 "$RUNS"); do
    [ "$RUNS" -eq 1 ] || echo "--- run $RUN of $RUNS" >&2
    # --- the baseline -------------------------------------------------------------------------
    "$TARGET/keel-baseline" "$BASELINE_PORT" "$WORK/baseline.db" 1000 >/dev/null 2>"$WORK/server.err" &
    SERVER_PID=$!
    wait_until_up "http://127.0.0.1:$BASELINE_PORT"
    BASE="http://127.0.0.1:$BASELINE_PORT"
    load baseline "GET /api/health" "$BASE/api/health"
    get_data_script "baseline-session"
    load baseline "POST /api/getData limit 100" -s "$WORK/get_data.lua" "$BASE/api/getData"
    stop_server

    # --- keel, in production settings ---------------------------------------------------------
    start_keel "$KEEL_BIN" "$PORT"

    register_user load@example.com

    seed 1 1000
    load keel "GET /api/health" "$BASE/api/health"
    get_data_script "$COOKIE"
    load keel "POST /api/getData limit 100" -s "$WORK/get_data.lua" "$BASE/api/getData"
    seed 1001 10000
    load keel "GET /api/items?limit=100 (10,000)" -H "Cookie: sessionId=$COOKIE" \
        "$BASE/api/items?limit=100"
    curl -sS -D "$WORK/health.head" -o /dev/null "$BASE/api/health"
    stop_server

    # --- the baseline, sending keel's health headers ------------------------------------------
    "$TARGET/keel-baseline" "$BASELINE_PORT" "$WORK/baseline.db" 1000 "$WORK/health.head" \
        >/dev/null 2>"$WORK/server.err" &
    SERVER_PID=$!
    wait_until_up "http://127.0.0.1:$BASELINE_PORT"
    BASE="http://127.0.0.1:$BASELINE_PORT"
    load baseline+h "GET /api/health" "$BASE/api/health"
    stop_server
done

# --- the comparison -----------------------------------------------------------------------
echo
echo "bench/load.sh $DURATION $THREADS $CONNECTIONS $RUNS — wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, loopback, $RUNS run(s)"
awk -F'|' '
    function dash(v) { return v == "" ? "-" : v }
    function ms(t) { if (t ~ /us$/) return t / 1000; if (t ~ /ms$/) return t + 0; if (t ~ /s$/) return t * 1000; return t }
    # median of the n values in a[1..n] (sorted in place; the mean of the middle two if n is even)
    function median(a, n,    i, j, t) {
        if (n == 0) return 0
        for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
        return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    # med(key, column): the median over the runs of that column of the rows named key
    # (empty fields — RSS at 10 s of a shorter load — are skipped; "" if every one is)
    function med(key, col,    r, a, n, f) {
        n = 0
        for (r = 1; r <= runs; r++) {
            if (!((r SUBSEP key) in row)) continue
            split(row[r, key], f, "|")
            if (f[col] != "") a[++n] = f[col]
        }
        return n ? median(a, n) : ""
    }
    {
        $5 = ms($5); $6 = ms($6)   # p50 and p99 in milliseconds
        row[$1, $2 "|" $3] = $0
        if ($2 == "keel" && !(($3) in seen)) { seen[$3] = 1; names[++n] = $3 }
    }
    END {
        printf "%-34s %10s %10s %7s %9s %9s %6s %8s %8s", "keel request", "req/s", "baseline", "ratio", "p50 ms", "p99 ms", "peak", "RSS@10s", "RSS@end"
        if (runs > 1) printf "  %s", "ratio of each run"
        printf "\n"
        getdata = "POST /api/getData limit 100"
        for (i = 1; i <= n; i++) {
            name = names[i]
            # The listing is compared with the baseline getData (it has no listing of its own).
            bname = ((1 SUBSEP "baseline|" name) in row) ? name : getdata
            delete ratios; m = 0; peak = 0; each = ""
            for (r = 1; r <= runs; r++) {
                if (!((r SUBSEP "keel|" name) in row) || !((r SUBSEP "baseline|" bname) in row)) continue
                split(row[r, "keel|" name], k, "|"); split(row[r, "baseline|" bname], b, "|")
                ratios[++m] = k[4] / b[4]; each = each sprintf(" %.2f", k[4] / b[4])
                if (k[7] + 0 > peak) peak = k[7] + 0
            }
            printf "%-34s %10.0f %10.0f %6.2fx %9.2f %9.2f %4s MiB %4s MiB %4s MiB", name, med("keel|" name, 4), med("baseline|" bname, 4), median(ratios, m), med("keel|" name, 5), med("keel|" name, 6), peak, dash(med("keel|" name, 8)), dash(med("keel|" name, 9))
            if (runs > 1) printf " %s", each
            printf "\n"
        }
        h = "GET /api/health"
        delete hb; delete kh; m = 0
        for (r = 1; r <= runs; r++) {
            if (!((r SUBSEP "baseline+h|" h) in row)) continue
            split(row[r, "baseline+h|" h], x, "|"); split(row[r, "baseline|" h], b, "|"); split(row[r, "keel|" h], k, "|")
            hb[++m] = x[4] / b[4]; kh[m] = k[4] / x[4]
        }
        if (m > 0) printf "\nhealth, the baseline sending keel'"'"'s %d-byte response head: %.0f req/s, %.2fx the bare baseline; keel %.2fx of it\n", head, med("baseline+h|" h, 4), median(hb, m), median(kh, m)
    }' OFS='|' runs="$RUNS" head="$(wc -c <"$WORK/health.head")" "$RESULTS"
# wrk corrects its latencies for coordinated omission: one pause of the host adds samples up to
# its length for every connection waiting through it, so a stolen second can move a p99 to
# ~1 s while req/s barely moves. Those loads are named here; rerun them.
if [ -s "$STEALS" ]; then
    echo
    echo "warning: the host stole CPU time during these loads; their numbers are the host's, not the servers':"
    cat "$STEALS"
fi
