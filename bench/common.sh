# Shared by bench/load.sh, bench/callgrind.sh and bench/ab.sh (sourced): keel started as in
# production, and its data for a load, made through the API as a user would. They expect WORK
# (a scratch directory); BASE is keel's URL once started.
#
# The scripts' default ports (280xx, 281xx; KEEL_BENCH_PORT overrides) lie below Linux's
# ephemeral range (32768–60999): a port in it can be held, in TIME_WAIT, by one of the
# thousands of client connections a load opened, and a server started on it then fails with
# "Address already in use" (keel sets SO_REUSEADDR, but the client's socket did not).

# need_package COMMAND PACKAGE: installs the Debian PACKAGE when COMMAND is missing.
need_package() {
    command -v "$1" >/dev/null 2>&1 && return 0
    echo "installing $1 (Debian package $2)…" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >/dev/null
    $sudo apt-get install -y -qq "$2" >/dev/null
}

# callgrind_dump LABEL DIR DEST: dumps the counts of the server started under callgrind (its
# valgrind pid is SERVER_PID, its --callgrind-out-file in DIR) and moves the dump to DEST.
# The dump lands as callgrind.PID.N (the threads merged, by default).
callgrind_dump() {
    callgrind_control -d "$1" "$SERVER_PID" >/dev/null 2>&1
    mv "$(ls -t "$2/callgrind.$SERVER_PID".* | head -1)" "$3"
}

# build_keel: unless KEEL_BIN names a binary (to measure that build), builds keel as it ships —
# scripts/build-release, the release profile optimised with the committed execution profile —
# and sets KEEL_BIN to it.
build_keel() {
    if [ -z "${KEEL_BIN:-}" ]; then
        KEEL_BIN="$(scripts/build-release --quiet)"
    fi
}

# tasks_every_two_seconds: the scheduled tasks run every two seconds in the keel started next
# (every minute and every five in production), so a profile of the request path counts their
# code too: run for the first time in the middle of a load, scattered code brought ~1 MiB of
# the binary's pages in at once (docs/performance.md, round 10).
tasks_every_two_seconds() {
    export KEEL_TASKS__PROCESS_DATA__SCHEDULE="*/2 * * * * *" \
        KEEL_TASKS__ORDER_IMPORTER__SCHEDULE="*/2 * * * * *"
}

# The rate limits raised so the load is not refused (they still count every request).
export KEEL_RATE_LIMIT__AUTH__LIMIT=1000000000 KEEL_RATE_LIMIT__API__LIMIT=1000000000 \
    KEEL_RATE_LIMIT__PUBLIC__LIMIT=1000000000

# register_user EMAIL: registers EMAIL, sets COOKIE to its session and creates the brand `Acme`.
register_user() {
    COOKIE="$(curl -sS -o /dev/null -D - -H 'Content-Type: application/json' \
        -d "{\"email\":\"$1\",\"password\":\"bench-password-1\"}" \
        "$BASE/api/auth/register" | awk -F'[=;]' 'tolower($1) ~ /^set-cookie: sessionid/ {print $2}')"
    [ -n "$COOKIE" ] || { echo "registering $1 failed" >&2; exit 1; }
    curl -sS -o /dev/null -H 'Content-Type: application/json' -H "Cookie: sessionId=$COOKIE" \
        -d '{"name":"Acme","active":true}' "$BASE/api/brands"
}

# seed FROM TO: creates items FROM..TO through POST /api/items, 32 requests in flight.
seed() {
    local from="$1" to="$2" file="$WORK/seed.curl"
    for i in $(seq "$from" "$to"); do
        # `next` separates transfers; a trailing one would be an empty transfer (an error).
        [ "$i" -eq "$from" ] || echo next
        printf 'url = "%s/api/items"\nheader = "Content-Type: application/json"\nheader = "Cookie: sessionId=%s"\ndata = "{\\"name\\":\\"item-%d\\",\\"brand\\":\\"Acme\\",\\"price\\":%d.%02d,\\"tags\\":[\\"load\\"]}"\noutput = "/dev/null"\nwrite-out = "%%{http_code}\\n"\n' \
            "$BASE" "$COOKIE" "$i" "$((i % 500))" "$((i % 100))"
    done >"$file"
    local created
    created="$(curl -sS --no-progress-meter --parallel --parallel-max 32 -K "$file" | grep -c '^201$' || true)"
    [ "$created" -eq "$((to - from + 1))" ] || {
        echo "seeding created $created of $((to - from + 1)) items" >&2; exit 1; }
}

# The session secret of every keel a script starts: one per script run, so a session made
# before a restart on the same data is still valid after it.
BENCH_SECRET="bench-secret-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"

# start_keel BINARY PORT [PREFIX…]: `serve_keel` on a fresh data directory.
start_keel() {
    rm -rf "$WORK/data"
    serve_keel "$@"
}

# serve_keel BINARY PORT [PREFIX…]: `BINARY serve` in the production settings (JSON log on
# stdout, sent to /dev/null) on the data directory in WORK, run under PREFIX (valgrind, `env
# NAME=VALUE`) if given. Sets SERVER_PID and BASE and returns once it answers /api/health.
serve_keel() {
    local binary="$1" port="$2"; shift 2
    KEEL_CONFIG_DIR="$PWD/config" KEEL_ENV=production KEEL_SESSION__SECRET="$BENCH_SECRET" \
        KEEL_DATABASE__URL="embedded://$WORK/data" \
        "$@" "$binary" serve --host 127.0.0.1 --port "$port" >/dev/null 2>"$WORK/server.err" &
    SERVER_PID=$!
    BASE="http://127.0.0.1:$port"
    wait_until_up "$BASE"
}

# wait_until_up URL: returns once URL/api/health answers; fails if SERVER_PID exits first.
wait_until_up() {
    for _ in $(seq 1 600); do
        if curl -fsS -o /dev/null "$1/api/health" 2>/dev/null; then return 0; fi
        kill -0 "$SERVER_PID" 2>/dev/null || {
            echo "the server exited during start-up:" >&2; cat "$WORK/server.err" >&2; exit 1; }
        sleep 0.2
    done
    echo "the server did not answer at $1" >&2; exit 1
}

# get_data_script COOKIE: $WORK/get_data.lua, a wrk script posting getData {"limit":100} with
# the session cookie COOKIE.
get_data_script() {
    cat >"$WORK/get_data.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"limit":100}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Cookie"] = "sessionId=$1"
LUA
}

# stop_server: stops the server started last (SIGTERM, then waits for it).
stop_server() {
    if [ -n "${SERVER_PID:-}" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
