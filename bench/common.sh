# Shared by bench/load.sh and bench/callgrind.sh (sourced): keel's data for a load, made through
# the API as a user would. Both expect BASE (keel's URL) and WORK (a scratch directory).

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
