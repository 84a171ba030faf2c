#!/usr/bin/env bash
# Two keel builds side by side: requests/s and the server's CPU time per request, the builds
# interleaved round by round so the machine's noise hits both (docs/performance.md).
#
# Usage: bench/ab.sh BINARY_A BINARY_B [rounds] [seconds]      (defaults: 3 rounds of 5 s)
#
# Each round starts A, then B, in the production settings of bench/load.sh on a fresh data
# directory with 1,000 items, and loads GET /api/health and POST /api/getData {"limit":100}
# with `wrk -t1 -c64`. CPU µs per request is the server's user + system time during the load
# (/proc/PID/stat) divided by the requests it answered: steadier than requests/s on a shared
# machine, where wrk's own share of the two cores moves the throughput.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
source bench/common.sh

if [ $# -lt 2 ]; then
    echo "usage: bench/ab.sh BINARY_A BINARY_B [rounds] [seconds]" >&2; exit 2
fi
BINARY_A="$1"
BINARY_B="$2"
ROUNDS="${3:-3}"
DURATION="${4:-5}"
PORT="${KEEL_BENCH_PORT:-28085}"
TICKS="$(getconf CLK_TCK)"
WORK="$(mktemp -d)"
trap 'stop_server; rm -rf "$WORK"' EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }

# measure NAME [wrk arguments…]: prints "req/s cpu-µs-per-request" of one load.
measure() {
    local before after out requests rps
    before="$(cpu_ticks)"
    out="$(wrk -t1 -c64 -d"${DURATION}s" "$@")"
    after="$(cpu_ticks)"
    requests="$(awk '/requests in/ {print $1}' <<<"$out")"
    rps="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")"
    if grep -q 'Non-2xx' <<<"$out"; then echo "a load answered non-2xx:" >&2; echo "$out" >&2; exit 1; fi
    awk -v r="$rps" -v t="$((after - before))" -v n="$requests" -v hz="$TICKS" \
        'BEGIN { printf "%8.0f req/s %7.1f µs CPU", r, t * 1e6 / hz / n }'
}

one() {   # LABEL BINARY
    start_keel "$2" "$PORT"
    register_user ab@example.com
    seed 1 1000
    get_data_script "$COOKIE"
    wrk -t1 -c64 -d1s "$BASE/api/health" >/dev/null   # warm up
    printf '%s  health %s  getData %s\n' "$1" "$(measure "$BASE/api/health")" \
        "$(measure -s "$WORK/get_data.lua" "$BASE/api/getData")"
    stop_server
}

for round in $(seq 1 "$ROUNDS"); do
    echo "round $round"
    one A "$BINARY_A"
    one B "$BINARY_B"
done
