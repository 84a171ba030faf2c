#!/usr/bin/env bash
# Load /api/health of a release build on loopback and print requests/s, p50, p99 and the
# server's peak RSS. Usage: bench/load.sh [seconds] [threads] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${1:-10}"
THREADS="${2:-2}"
CONNECTIONS="${3:-64}"
PORT="${KEEL_BENCH_PORT:-38080}"

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

wrk --latency -t "$THREADS" -c "$CONNECTIONS" -d "${DURATION}s" \
    "http://127.0.0.1:$PORT/api/health" | tee "$OUT"

RPS="$(awk '/^Requests\/sec:/ {print $2}' "$OUT")"
P50="$(awk '$1 == "50%" {print $2}' "$OUT")"
P99="$(awk '$1 == "99%" {print $2}' "$OUT")"
PEAK_RSS_KB="$(awk '/^VmHWM:/ {print $2}' "/proc/$SERVER_PID/status")"
echo
echo "keel /api/health, ${DURATION}s, ${THREADS} threads, ${CONNECTIONS} connections (loopback)"
echo "requests/s: $RPS"
echo "p50:        $P50"
echo "p99:        $P99"
echo "peak RSS:   $((PEAK_RSS_KB / 1024)) MiB (${PEAK_RSS_KB} kB VmHWM)"
