#!/usr/bin/env bash
# Load scenarios of `conclave-bench` against release builds of `conclave`, on SQLite and
# on PostgreSQL, one fresh server (and database) per scenario so each memory figure is
# its own. Prints each scenario's table and writes JSON reports and server logs under
# target/bench-load/. `make bench` runs it under `with-postgres`, which provides
# TESTKIT_PG_URL (a throwaway cluster); without it, PostgreSQL runs are skipped.
#
# Sizes (defaults: the issue's; see `conclave-bench --help`):
#   BENCH_SCENARIOS="steady burst fanout connections"   which scenarios, in order
#   BENCH_BACKENDS="sqlite postgresql"                   which databases
#   BENCH_ARGS="--duration 10"                           flags for every run
#   BENCH_STEADY_ARGS, BENCH_BURST_ARGS, BENCH_FANOUT_ARGS, BENCH_CONNECTIONS_ARGS
#                                                        flags for one scenario, e.g.
#   BENCH_STEADY_ARGS="--users 200 --rooms 20 --rate 500"
#   BENCH_SERVER_ENV="MALLOC_ARENA_MAX=2"                extra environment for the server
# Exits non-zero if a run fails or a message was not delivered exactly once (after
# running the rest).
set -uo pipefail

cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
SCENARIOS=${BENCH_SCENARIOS:-steady burst fanout connections}
BACKENDS=${BENCH_BACKENDS:-sqlite postgresql}
OUT=target/bench-load
mkdir -p "$OUT"

$CARGO build -q --release -p conclave-server -p conclave-bench --bin conclave --bin conclave-bench || exit 1
CONCLAVE=target/release/conclave
BENCH=target/release/conclave-bench
# Many sockets: raise the open-file limit to what the system allows.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
echo "open-file limit: $(ulimit -n); started $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo

failed=0
server_pid=

stop_server() {
    if [ -n "$server_pid" ]; then
        kill -TERM "$server_pid" 2>/dev/null
        wait "$server_pid" 2>/dev/null
        server_pid=
    fi
}
trap stop_server EXIT

# start_server DIR DATABASE_URL: starts conclave in DIR; sets server_pid, url, password.
start_server() {
    local dir=$1 database=$2
    rm -rf "$dir" && mkdir -p "$dir"
    # The abuse limits are out of the way (one address, users sending flat out), as the
    # comparison does for Synapse; BENCH_SERVER_ENV may set them back.
    # shellcheck disable=SC2086 # BENCH_SERVER_ENV is a list of NAME=VALUE words
    env CONCLAVE_LOGIN__MAX_ATTEMPTS_PER_MINUTE_PER_ADDRESS=1000000 \
        CONCLAVE_MESSAGING__MAX_SENDS_PER_MINUTE=1000000 \
        CONCLAVE_MESSAGING__WEBSOCKET_MAX_PER_USER=100000 \
        ${BENCH_SERVER_ENV:-} CONCLAVE_DATA_DIR="$dir" CONCLAVE_DATABASE__URL="$database" \
        CONCLAVE_LOG__LEVEL=warn CONCLAVE_LOG__FORMAT=json "$CONCLAVE" serve --bind 127.0.0.1:0 \
        >"$dir/stdout.txt" 2>"$dir/server.log" &
    server_pid=$!
    for _ in $(seq 600); do
        grep -q "Log in with" "$dir/stdout.txt" 2>/dev/null && break
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    url=$(sed -n 's/^ *Conclave is serving at //p' "$dir/stdout.txt")
    password=$(sed -n 's/^ *one-time password: *//p' "$dir/stdout.txt")
    if [ -z "$url" ] || [ -z "$password" ]; then
        echo "conclave did not start; see $dir/server.log" >&2
        tail -5 "$dir/server.log" >&2
        stop_server
        return 1
    fi
}

for backend in $BACKENDS; do
    for scenario in $SCENARIOS; do
        name="$backend-$scenario"
        case $backend in
            sqlite) database="" ;;
            postgresql)
                if [ -z "${TESTKIT_PG_URL:-}" ]; then
                    echo "skipping $name: no TESTKIT_PG_URL (run under with-postgres, as make bench does)"
                    continue
                fi
                db="bench_${scenario}_$$"
                psql -q "$TESTKIT_PG_URL" -c "CREATE DATABASE $db" || { failed=1; continue; }
                database="${TESTKIT_PG_URL%/*}/$db"
                ;;
            *) echo "unknown backend $backend" >&2; failed=1; continue ;;
        esac
        start_server "$OUT/$name" "$database" || { failed=1; continue; }
        scenario_args_var="BENCH_$(echo "$scenario" | tr '[:lower:]' '[:upper:]')_ARGS"
        # shellcheck disable=SC2086 # word splitting of the flag lists is intended
        "$BENCH" --url "$url" --admin-password "$password" \
            --admin-new-password "bench admin passphrase $$" \
            --server-pid "$server_pid" --label "$backend" --scenario "$scenario" \
            --json "$OUT/$name.json" ${BENCH_ARGS:-} ${!scenario_args_var:-}
        status=$?
        [ $status -eq 0 ] || { echo "($name exited with $status)"; failed=1; }
        stop_server
        if [ "$backend" = postgresql ]; then
            psql -q "$TESTKIT_PG_URL" -c "DROP DATABASE $db" || true
        fi
    done
done
echo "JSON reports and server logs: $OUT/"
exit $failed
