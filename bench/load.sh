#!/usr/bin/env bash
# Load a release build on loopback and print requests/s, p50, p99 and the server's peak RSS.
# Usage: bench/load.sh [seconds] [threads] [connections]
# Scenarios (KEEL_BENCH_SCENARIO): `health` (default) loads /api/health; `api` registers a
# user, seeds 10,000 items through POST /api/items, then loads, with the session cookie,
# GET /api/items?limit=100 and POST /api/getData (rate limits raised through the environment).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${1:-10}"
THREADS="${2:-2}"
CONNECTIONS="${3:-64}"
PORT="${KEEL_BENCH_PORT:-38080}"
SCENARIO="${KEEL_BENCH_SCENARIO:-health}"
SEED_ITEMS="${KEEL_BENCH_ITEMS:-10000}"

if ! command -v wrk >/dev/null 2>&1; then
    echo "installing wrk (Debian package)…" >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq wrk >/dev/null
fi

cargo build --release --quiet -p keel-cli
BIN="${CARGO_TARGET_DIR:-target}/release/keel"
DATA_DIR="$(mktemp -d)"
OUT="$(mktemp)"
cleanup() {
    if [ -n "${SERVER_PID:-}" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$DATA_DIR" "$OUT"
}
trap cleanup EXIT

# The load test raises every rate limit by configuration alone (no code path is switched off).
export KEEL_RATE_LIMIT__AUTH__LIMIT=1000000000 KEEL_RATE_LIMIT__API__LIMIT=1000000000 \
    KEEL_RATE_LIMIT__PUBLIC__LIMIT=1000000000
KEEL_CONFIG_DIR="$PWD/config" KEEL_ENV=development KEEL_LOG__LEVEL=warn \
    KEEL_DATABASE__URL="embedded://$DATA_DIR/data" \
    "$BIN" serve --host 127.0.0.1 --port "$PORT" >"$DATA_DIR/server.log" 2>&1 &
SERVER_PID=$!

for _ in $(seq 1 100); do
    if "$BIN" healthcheck --port "$PORT" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "keel exited during start-up:" >&2; cat "$DATA_DIR/server.log" >&2; exit 1
    fi
    sleep 0.1
done

BASE="http://127.0.0.1:$PORT"

# Runs wrk against one target and prints its summary. Extra wrk arguments follow the name.
load() {
    local name="$1"; shift
    wrk --latency -t "$THREADS" -c "$CONNECTIONS" -d "${DURATION}s" "$@" | tee "$OUT"
    RPS="$(awk '/^Requests\/sec:/ {print $2}' "$OUT")"
    P50="$(awk '$1 == "50%" {print $2}' "$OUT")"
    P99="$(awk '$1 == "99%" {print $2}' "$OUT")"
    NON_2XX="$(awk '/Non-2xx or 3xx responses:/ {print $5}' "$OUT")"
    PEAK_RSS_KB="$(awk '/^VmHWM:/ {print $2}' "/proc/$SERVER_PID/status")"
    echo
    echo "keel $name, ${DURATION}s, ${THREADS} threads, ${CONNECTIONS} connections (loopback)"
    echo "requests/s: $RPS"
    echo "p50:        $P50"
    echo "p99:        $P99"
    echo "non-2xx:    ${NON_2XX:-0}"
    echo "peak RSS:   $((PEAK_RSS_KB / 1024)) MiB (${PEAK_RSS_KB} kB VmHWM, whole run so far)"
    echo
}

if [ "$SCENARIO" = "api" ]; then
    # A user (its session cookie), an active brand, then the items, 32 requests in flight.
    COOKIE="$(curl -sS -o /dev/null -D - -H 'Content-Type: application/json' \
        -d '{"email":"load@example.com","password":"load-test-password-1"}' \
        "$BASE/api/auth/register" | awk -F'[=;]' 'tolower($1) ~ /^set-cookie: sessionid/ {print $2}')"
    [ -n "$COOKIE" ] || { echo "registering the load-test user failed" >&2; exit 1; }
    curl -sS -o /dev/null -H 'Content-Type: application/json' -H "Cookie: sessionId=$COOKIE" \
        -d '{"name":"Acme","active":true}' "$BASE/api/brands"
    SEED="$DATA_DIR/seed.curl"
    for i in $(seq 1 "$SEED_ITEMS"); do
        # `next` separates transfers; a trailing one would be an empty transfer (an error).
        [ "$i" -eq 1 ] || echo next
        printf 'url = "%s/api/items"\nheader = "Content-Type: application/json"\nheader = "Cookie: sessionId=%s"\ndata = "{\\"name\\":\\"item-%d\\",\\"brand\\":\\"Acme\\",\\"price\\":%d.%02d,\\"tags\\":[\\"load\\"]}"\noutput = "/dev/null"\nwrite-out = "%%{http_code}\\n"\n' \
            "$BASE" "$COOKIE" "$i" "$((i % 500))" "$((i % 100))"
    done >"$SEED"
    SEEDED="$(curl -sS --no-progress-meter --parallel --parallel-max 32 -K "$SEED" | grep -c '^201$' || true)"
    echo "seeded $SEEDED items"
    [ "$SEEDED" -eq "$SEED_ITEMS" ] || { echo "seeding created $SEEDED of $SEED_ITEMS items" >&2; exit 1; }

    load "GET /api/items?limit=100 (logged in)" -H "Cookie: sessionId=$COOKIE" "$BASE/api/items?limit=100"
    cat >"$DATA_DIR/get_data.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"filter":{"price":{"\$gte":100,"\$lt":400},"brand":"Acme"},"limit":100}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Cookie"] = "sessionId=$COOKIE"
LUA
    load "POST /api/getData (logged in)" -s "$DATA_DIR/get_data.lua" "$BASE/api/getData"
else
    load "/api/health" "$BASE/api/health"
fi
