#!/usr/bin/env bash
# Remakes crates/keel-cli/keel.profdata, the execution profile scripts/build-release (and the
# image) optimise keel with (docs/performance.md, "Round 28").
#
# Usage: bench/pgo.sh                        (an instrumented release build, ~13 min, then ~2 min
#                                             of requests)
#        KEEL_BIN=path bench/pgo.sh          (runs that instrumented build instead: one built with
#                                             RUSTFLAGS=-Cprofile-generate=DIR)
#
# How: keel is built with `-Cprofile-generate` (every branch counted) in a target directory of
# its own, runs as in bench/load.sh (production settings, the scheduled tasks every two
# seconds so their code is counted with the request path's) through the requests the load
# script sends — a registration, 10,000 items created, health, getData and the listing under
# `wrk` for a few seconds each — and stops; `llvm-profdata merge --sparse` (the LLVM of the
# pinned rustc, from Debian's llvm-N) turns what it wrote at exit into the indexed profile
# rustc reads. Functions the run never reached are left out of it (`--sparse`): the compiler
# optimises them as it would without a profile. Rerun after changes to the request path or the
# dependencies, then bench/layout.sh (which lays out the build this profile makes).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
source bench/common.sh

PORT="${KEEL_BENCH_PORT:-28092}"
PROFILE=crates/keel-cli/keel.profdata
LLVM_MAJOR="$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')"
[ -n "$LLVM_MAJOR" ] || { echo "rustc -vV names no LLVM version" >&2; exit 1; }
# The indexed profile must be one this rustc's LLVM reads: made by the same major version.
PROFDATA="llvm-profdata-$LLVM_MAJOR"
need_package "$PROFDATA" "llvm-$LLVM_MAJOR"
need_package wrk wrk

if [ -z "${KEEL_BIN:-}" ]; then
    # Absolute: cargo runs rustc for each dependency in that dependency's own directory.
    generate_dir="$(realpath -m "${CARGO_TARGET_DIR:-target}/pgo-generate")"
    # Build scripts and proc macros are instrumented too; what they write lands here, unused.
    RUSTFLAGS="-Cprofile-generate=$generate_dir/build-profiles" \
        cargo build --release --locked --quiet -p keel-cli --target-dir "$generate_dir"
    KEEL_BIN="$generate_dir/release/keel"
fi
WORK="$(mktemp -d)"
trap 'stop_server; rm -rf "$WORK"' EXIT
mkdir "$WORK/profiles"

tasks_every_two_seconds
start_keel "$KEEL_BIN" "$PORT" env LLVM_PROFILE_FILE="$WORK/profiles/keel-%p.profraw"

register_user pgo@example.com
seed 1 1000
get_data_script "$COOKIE"
wrk -t1 -c64 -d5s "$BASE/api/health" >/dev/null
wrk -t1 -c64 -d5s -s "$WORK/get_data.lua" "$BASE/api/getData" >/dev/null
seed 1001 10000
wrk -t1 -c64 -d5s -H "Cookie: sessionId=$COOKIE" "$BASE/api/items?limit=100" >/dev/null
# The counts are written when the process exits (after a graceful shutdown).
stop_server

shopt -s nullglob
profiles=("$WORK"/profiles/*.profraw)
[ "${#profiles[@]}" -gt 0 ] || {
    echo "keel wrote no profile: was $KEEL_BIN built with -Cprofile-generate?" >&2; exit 1; }
"$PROFDATA" merge --sparse -o "$PROFILE" "${profiles[@]}"
echo "$PROFILE: $("$PROFDATA" show "$PROFILE" | awk -F': ' '/^Total functions/ {print $2}') functions, $(du -k "$PROFILE" | cut -f1) KiB"
