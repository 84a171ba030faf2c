#!/usr/bin/env bash
# Regenerates crates/keel-cli/symbol-order.txt: the functions keel runs, in the order the linker
# should place them (docs/performance.md, "Round 6").
#
# Usage: bench/layout.sh            (makes the production build, scripts/build-release, and runs
#                                   it under callgrind, ~3 min)
#        KEEL_BIN=path bench/layout.sh
#
# Why: the kernel maps a binary's code 64 KiB around every page that is touched, and the linker
# lays functions out in no particular order, so start-up and the request path touched code all
# over keel's 19 MiB of text and ~14 MiB of it stayed resident. The list makes the linker (lld,
# `--symbol-ordering-file`, passed by crates/keel-cli/build.rs) put the functions that serve
# requests side by side, then those only start-up runs, then everything else.
#
# How: keel runs as in bench/load.sh (production settings) under
# `valgrind --tool=callgrind --demangle=no`; a dump after start-up and one after requests of every
# kind the load script sends (a registration, item creation, health, getData, the listing, plus
# whatever background tasks ran meanwhile) name every function executed, by its linker symbol.
# The request phase's functions come first, most instructions first; then start-up's.
# Symbols the next build no longer has are skipped by the linker; new functions land after the
# listed ones. Rerun this after large changes to the request path or dependencies, and after
# bench/pgo.sh (the execution profile changes what the build inlines, and so its symbols).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
source bench/common.sh

need_package valgrind valgrind
PORT="${KEEL_BENCH_PORT:-28091}"
ORDER="crates/keel-cli/symbol-order.txt"
build_keel
WORK="$(mktemp -d)"
trap 'stop_server; rm -rf "$WORK"' EXIT

# The scheduled tasks' code is laid out with the request path's.
tasks_every_two_seconds
start_keel "$KEEL_BIN" "$PORT" valgrind --tool=callgrind --demangle=no \
    --callgrind-out-file="$WORK/callgrind.%p"
callgrind_dump startup "$WORK" "$WORK/startup.out"

register_user layout@example.com
seed 1 200
for _ in $(seq 1 50); do
    curl -fsS -o /dev/null "$BASE/api/health"
    curl -fsS -o /dev/null -H 'Content-Type: application/json' -H "Cookie: sessionId=$COOKIE" \
        -d '{"limit":100}' "$BASE/api/getData"
    curl -fsS -o /dev/null -H "Cookie: sessionId=$COOKIE" "$BASE/api/items?limit=100"
done
callgrind_dump requests "$WORK" "$WORK/requests.out"
stop_server

# functions FILE: "instructions symbol" for every function a dump charges instructions to.
# Callgrind names a function once in full ("fn=(id) name") and by "(id)" afterwards.
functions() {
    awk '
        /^fn=/ {
            spec = substr($0, 4)
            if (match(spec, /^\([0-9]+\) /)) { id = substr(spec, 1, RLENGTH - 1); name[id] = substr(spec, RLENGTH + 1); cur = name[id] }
            else if (match(spec, /^\([0-9]+\)$/)) { cur = name[spec] }
            else { cur = spec }
            next
        }
        /^c(fn|fi|fe|ob)=|^calls=/ { if ($0 ~ /^calls=/) skip = 1
            if (match($0, /^cfn=\([0-9]+\) /)) { id = substr($0, 5, RLENGTH - 5); name[id] = substr($0, RLENGTH + 1) }
            next }
        /^[0-9+*-]/ { if (skip) { skip = 0; next } if (cur != "") cost[cur] += $2 }
        END { for (f in cost) if (cost[f] > 0) print cost[f], f }
    ' "$1"
}
# Symbol names only (Rust's, and the C of SQLite and mimalloc); libc's are not in the binary
# and the linker skips them.
symbols() { functions "$1" | sort -k1,1nr | awk '{print $2}' | grep -E '^[A-Za-z_.$][A-Za-z0-9_.$]*$' || true; }
symbols "$WORK/requests.out" >"$WORK/requests.txt"
symbols "$WORK/startup.out" >"$WORK/startup.txt"
{
    cat "$WORK/requests.txt"
    grep -vxF -f "$WORK/requests.txt" "$WORK/startup.txt" || true
} >"$ORDER"
echo "$ORDER: $(wc -l <"$WORK/requests.txt") request-path functions, $(wc -l <"$ORDER") in all"
# process-data's `Task::run` is in the list once a task run was profiled.
grep -q 'ProcessData.*Task.*3run' "$WORK/requests.txt" ||
    echo "warning: no scheduled task ran while requests were profiled; rerun bench/layout.sh" >&2
