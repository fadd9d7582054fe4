#!/usr/bin/env bash
# Side by side: the same conclave-bench scenarios against Conclave (release, PostgreSQL)
# and against Matrix Synapse (from PyPI, in a venv under target/, on PostgreSQL too), on
# this machine in one run; prints both tables and the ratios. `make bench-compare` runs
# it under `with-postgres` (TESTKIT_PG_URL: a throwaway cluster).
#
#   BENCH_SCENARIOS="steady burst fanout"      which scenarios
#   BENCH_COMPARE_ARGS="--users 200 --rooms 20 --duration 20"   flags for both systems
#                                               (Synapse registers users slowly; the
#                                               issue's full sizes work, given time)
#   BENCH_<SCENARIO>_ARGS                       per scenario, for both systems
set -uo pipefail

cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
SCENARIOS=${BENCH_SCENARIOS:-steady burst fanout}
COMPARE_ARGS=${BENCH_COMPARE_ARGS:---users 200 --rooms 20 --duration 20}
OUT=target/bench-compare
VENV=target/synapse-venv
if [ -z "${TESTKIT_PG_URL:-}" ]; then
    echo "bench-compare needs TESTKIT_PG_URL: run it as make bench-compare" >&2
    exit 1
fi
mkdir -p "$OUT"

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import synapse" 2>/dev/null; then
    echo "installing matrix-synapse[postgres] into $VENV…"
    python3 -m venv "$VENV" && "$VENV/bin/pip" install -q "matrix-synapse[postgres]" || exit 1
fi
$CARGO build -q --release -p conclave-bench --bin conclave-bench || exit 1
BENCH=target/release/conclave-bench
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

synapse_pid=
stop_synapse() {
    if [ -n "$synapse_pid" ]; then
        kill -TERM "$synapse_pid" 2>/dev/null
        wait "$synapse_pid" 2>/dev/null
        synapse_pid=
    fi
}
trap stop_synapse EXIT

# Synapse: generated config, then what a benchmark needs (RECIPES.md): loopback only,
# open registration without verification (the bench registers its users), no presence,
# no key servers, rate limits out of the way, and PostgreSQL like Conclave.
SYN=$OUT/synapse
rm -rf "$SYN" && mkdir -p "$SYN"
db="synapse_bench_$$"
psql -q "$TESTKIT_PG_URL" -c "CREATE DATABASE $db ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0" || exit 1
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$VENV/bin/python" -m synapse.app.homeserver --server-name localhost \
    --config-path "$SYN/homeserver.yaml" --data-directory "$SYN" \
    --generate-config --report-stats=no >/dev/null || exit 1
PG_URL=$TESTKIT_PG_URL DB=$db PORT=$port "$VENV/bin/python" - "$SYN/homeserver.yaml" <<'PY'
import os, sys, urllib.parse, yaml
path = sys.argv[1]
config = yaml.safe_load(open(path))
url = urllib.parse.urlparse(os.environ["PG_URL"])
unlimited = {"per_second": 100000, "burst_count": 100000}
config.update({
    "listeners": [{"port": int(os.environ["PORT"]), "bind_addresses": ["127.0.0.1"],
                   "type": "http", "tls": False, "x_forwarded": False,
                   "resources": [{"names": ["client"], "compress": False}]}],
    "enable_registration": True,
    "enable_registration_without_verification": True,
    "trusted_key_servers": [],
    "presence": {"enabled": False},
    "rc_message": unlimited,
    "rc_registration": unlimited,
    "rc_login": {"address": unlimited, "account": unlimited, "failed_attempts": unlimited},
    "rc_joins": {"local": unlimited, "remote": unlimited},
    "rc_joins_per_room": unlimited,
    "rc_invites": {"per_room": unlimited, "per_user": unlimited, "per_issuer": unlimited},
    "database": {"name": "psycopg2", "args": {
        "user": url.username or "postgres", "host": url.hostname, "port": url.port,
        "database": os.environ["DB"], "cp_min": 5, "cp_max": 10}},
})
yaml.safe_dump(config, open(path, "w"))
PY
"$VENV/bin/python" -m synapse.app.homeserver -c "$SYN/homeserver.yaml" >"$SYN/stdout.txt" 2>&1 &
synapse_pid=$!
synapse_url="http://127.0.0.1:$port"
for _ in $(seq 300); do
    curl -sf "$synapse_url/_matrix/client/versions" >/dev/null 2>&1 && break
    kill -0 "$synapse_pid" 2>/dev/null || break
    sleep 0.2
done
if ! curl -sf "$synapse_url/_matrix/client/versions" >/dev/null 2>&1; then
    echo "Synapse did not start; see $SYN/stdout.txt and homeserver.log" >&2
    tail -20 "$SYN/stdout.txt" >&2
    exit 1
fi
echo "Synapse $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("matrix-synapse"))') at $synapse_url (PostgreSQL)"

failed=0
for scenario in $SCENARIOS; do
    args_var="BENCH_$(echo "$scenario" | tr '[:lower:]' '[:upper:]')_ARGS"
    # Conclave on PostgreSQL, through the load script (a fresh server per scenario).
    BENCH_BACKENDS=postgresql BENCH_SCENARIOS=$scenario \
        BENCH_ARGS="$COMPARE_ARGS ${!args_var:-}" scripts/bench-load.sh || failed=1
    cp target/bench-load/postgresql-"$scenario".json "$OUT/conclave-$scenario.json" 2>/dev/null
    # shellcheck disable=SC2086 # flag lists
    "$BENCH" --target matrix --url "$synapse_url" --server-pid "$synapse_pid" \
        --label "synapse postgresql" --scenario "$scenario" \
        --json "$OUT/matrix-$scenario.json" $COMPARE_ARGS ${!args_var:-} || failed=1
    python3 - "$OUT/conclave-$scenario.json" "$OUT/matrix-$scenario.json" "$scenario" <<'PY'
import json, sys
try:
    c, m = (json.load(open(p)) for p in sys.argv[1:3])
except OSError as err:
    sys.exit(f"no comparison: {err}")
def ratio(a, b):
    return f"{a / b:.1f}x" if b else "-"
print(f"### {sys.argv[3]}: Conclave / Synapse\n")
print("| figure | Conclave | Synapse | ratio |\n|---|---|---|---|")
print(f"| msg/s acknowledged | {c['messages_per_second']:.0f} | {m['messages_per_second']:.0f} | {ratio(c['messages_per_second'], m['messages_per_second'])} |")
for name, key in (("send", "send_latency"), ("delivery", "delivery_latency"), ("to every member", "delivery_all_members_latency")):
    for q in ("p50_ms", "p99_ms"):
        a, b = c[key][q], m[key][q]
        print(f"| {name} {q[:3]} (ms) | {a:.1f} | {b:.1f} | Synapse/Conclave {ratio(b, a)} |")
print(f"| exactly once | {c['exactly_once']} | {m['exactly_once']} | |")
print(f"| server peak RSS (MiB) | {(c.get('server') or {}).get('peak_rss_kib', 0) / 1024:.0f} | {(m.get('server') or {}).get('peak_rss_kib', 0) / 1024:.0f} | |")
print()
PY
done
stop_synapse
psql -q "$TESTKIT_PG_URL" -c "DROP DATABASE $db" || true
exit $failed
