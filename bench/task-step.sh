#!/usr/bin/env bash
# bench/task-step.sh [runs]: keel's resident memory through a 60 s listing load (`wrk -t1
# -c64`, `GET /api/items?limit=100` over 10,000 items) with `process-data`'s run over all
# 10,000 items scheduled ~20 s into it: bench/load.sh's no-growth check (RSS after 60 s within
# 10 % of RSS after 10 s) with the task's run placed inside it on purpose, rather than wherever
# its five-minute mark falls. Prints RSS every 5 s (with its anonymous and file-backed parts
# and the thread count) and, per run, the step 10 s → 60 s.
# `bench/task-step.sh RUNS control` runs the same loads with the task disabled: the step a
# freshly started server's own warm-up leaves (its caches filling), to set the task's against.
# KEEL_BIN=PATH measures that keel binary; without it the production build (scripts/build-release)
# is made and measured.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
source bench/common.sh
need_package wrk wrk
RUNS="${1:-1}"
MODE="${2:-task}"
case "$MODE" in task | control) ;; *) echo "usage: bench/task-step.sh [runs] [control]" >&2; exit 2 ;; esac
PORT="${KEEL_BENCH_PORT:-28190}"
build_keel
WORK="$(mktemp -d)"
trap 'stop_server; rm -rf "$WORK"' EXIT
# RSS in MiB, then (anonymous MiB, file-backed MiB, threads): where a step is, and whether the
# run left threads behind.
rss_mib() {
    awk '/VmRSS/ {r = $2} /RssAnon/ {a = $2} /RssFile/ {f = $2} /Threads/ {t = $2}
        END {printf "%.1f(a%.1f,f%.1f,t%d)", r / 1024, a / 1024, f / 1024, t}' "/proc/$SERVER_PID/status"
}

for run in $(seq 1 "$RUNS"); do
    start_keel "$KEEL_BIN" "$PORT" env KEEL_TASKS__PROCESS_DATA__ENABLED=false
    register_user "task-step-$run@example.com"
    seed 1 10000
    stop_server
    # The schedule is a six-field cron line in UTC: the second ~23 s from now (3 s of warm-up).
    read -r second minute hour < <(date -u -d "+23 seconds" +'%-S %-M %-H')
    task=(KEEL_TASKS__PROCESS_DATA__SCHEDULE="$second $minute $hour * * *")
    [ "$MODE" = control ] && task=(KEEL_TASKS__PROCESS_DATA__ENABLED=false)
    serve_keel "$KEEL_BIN" "$PORT" env "${task[@]}"
    wrk -t1 -c64 -d3s -H "Cookie: sessionId=$COOKIE" "$BASE/api/items?limit=100" >/dev/null
    # 63 s, so that the 60 s sample is taken under the load, not as its 64 connections close.
    wrk -t1 -c64 -d63s -H "Cookie: sessionId=$COOKIE" "$BASE/api/items?limit=100" >"$WORK/wrk" &
    load=$!
    series=""
    for t in $(seq 0 5 60); do
        rss="$(rss_mib)"
        series+=" ${t}s:$rss"
        [ "$t" = 10 ] && at10="$rss"
        [ "$t" = 60 ] || sleep 5
    done
    wait "$load"
    at60="$rss"
    echo "run $run: RSS (MiB)$series"
    echo "run $run ($MODE): 10 s $at10 → 60 s $at60 MiB ($(awk -v a="${at10%%(*}" -v b="${at60%%(*}" 'BEGIN {printf "%+.0f %%", (b / a - 1) * 100}')), $(awk '/Requests\/sec/ {print $2}' "$WORK/wrk") req/s"
    stop_server
done
