#!/usr/bin/env bash
# Instructions per request, counted by callgrind: exact and repeatable on a noisy machine, where
# wall-clock numbers are not (docs/performance.md).
#
# Usage: bench/callgrind.sh [health|getData|listing|both] [requests]      (defaults: both 2000)
#
# keel runs in the production settings of bench/load.sh (KEEL_ENV=production, JSON request log,
# rate limits on and raised, the session checked on every request) under
# `valgrind --tool=callgrind --instr-atstart=no`, on a fresh data directory with 1,000 items
# created through the API. Each request kind is warmed up, then counted alone: instrumentation is
# switched on, REQUESTS requests are sent (8 in flight over kept-alive connections), switched
# off, and the dump's total is divided by REQUESTS (getData and the listing send a quarter as
# many; the listing's kind first seeds 10,000 items); so is the part spent serving the
# connections, without the time-driven background work. The dumps
# stay in target/callgrind/ for `callgrind_annotate --inclusive=yes FILE`. Without KEEL_BIN the
# production build is made and measured (scripts/build-release); KEEL_BIN=PATH measures that
# binary instead (to compare two builds).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
source bench/common.sh

WHAT="${1:-both}"
REQUESTS="${2:-2000}"
PORT="${KEEL_BENCH_PORT:-28090}"
case "$WHAT" in health | getData | listing | both) ;; *)
    echo "usage: bench/callgrind.sh [health|getData|listing|both] [requests]" >&2; exit 2 ;;
esac

need_package valgrind valgrind

build_keel
OUT_DIR="${CARGO_TARGET_DIR:-target}/callgrind"
mkdir -p "$OUT_DIR"
WORK="$(mktemp -d)"
trap 'stop_server; rm -rf "$WORK"' EXIT

start_keel "$KEEL_BIN" "$PORT" \
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT_DIR/callgrind.%p"
# valgrind's pid is keel's: callgrind_control addresses it directly.

register_user callgrind@example.com
seed 1 1000

# requests FILE KIND COUNT: a curl config of COUNT requests of KIND.
requests() {
    local file="$1" kind="$2" count="$3"
    for i in $(seq 1 "$count"); do
        [ "$i" -eq 1 ] || echo next
        case "$kind" in
        health) printf 'url = "%s/api/health"\n' "$BASE" ;;
        getData) printf 'url = "%s/api/getData"\nheader = "Content-Type: application/json"\nheader = "Cookie: sessionId=%s"\ndata = "{\\"limit\\":100}"\n' \
            "$BASE" "$COOKIE" ;;
        listing) printf 'url = "%s/api/items?limit=100"\nheader = "Cookie: sessionId=%s"\n' "$BASE" "$COOKIE" ;;
        esac
        printf 'output = "/dev/null"\nwrite-out = "%%{http_code}\\n"\n'
    done >"$file"
}
send() {   # FILE COUNT: sends them, fails unless every answer is 2xx
    local ok
    ok="$(curl -sS --no-progress-meter --parallel --parallel-max 8 -K "$1" | grep -c '^20[01]$' || true)"
    [ "$ok" -eq "$2" ] || { echo "$ok of $2 requests answered 2xx" >&2; exit 1; }
}

measure() {   # KIND COUNT
    local kind="$1" count="$2" name
    requests "$WORK/$kind" "$kind" "$count"
    send "$WORK/$kind" "$count"   # warm-up
    callgrind_control -z "$SERVER_PID" >/dev/null 2>&1
    callgrind_control -i on "$SERVER_PID" >/dev/null 2>&1
    send "$WORK/$kind" "$count"
    callgrind_control -i off "$SERVER_PID" >/dev/null 2>&1
    name="$OUT_DIR/$kind"
    rm -f "$OUT_DIR/callgrind.$SERVER_PID".*
    callgrind_dump "$kind" "$OUT_DIR" "$name.out"
    local total served
    total="$(awk '/^totals:/ {print $2}' "$name.out")"
    # The connections' own share: what the time-driven work that runs meanwhile (the runtime
    # sampler every second, scheduled tasks at their marks, both far more often per request
    # under callgrind's slowdown than in a real load) adds to the total is left out. The
    # production build (scripts/build-release) inlines the connection's future into tokio's
    # worker loop, so that figure exists only for builds without the execution profile
    # (`cargo build --release`, passed as KEEL_BIN); compare builds of the two kinds by the
    # total per request.
    served="$(callgrind_annotate --inclusive=yes "$name.out" 2>/dev/null |
        awk '!found && /keel::http::server::serve_connection::\{\{closure\}\} \[/ {gsub(",", "", $1); print $1; found = 1}')"
    local on_connections="(the connections inlined)"
    [ -z "$served" ] || on_connections="$(printf '%8d on the connections' "$((served / count))")"
    printf '%-8s %6d requests  %12d instructions  %8d per request, %s   (%s)\n' \
        "$kind" "$count" "$total" "$((total / count))" "$on_connections" "$name.out"
}

case "$WHAT" in
health) measure health "$REQUESTS" ;;
getData) measure getData "$((REQUESTS / 4))" ;;
# The listing as bench/load.sh loads it: its page and `total` over 10,000 items.
listing) seed 1001 10000; measure listing "$((REQUESTS / 4))" ;;
both) measure health "$REQUESTS"; measure getData "$((REQUESTS / 4))" ;;
esac
