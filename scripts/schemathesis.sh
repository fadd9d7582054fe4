#!/usr/bin/env bash
# Runs schemathesis (from PyPI, pinned) against a running Conclave's OpenAPI document:
#   scripts/schemathesis.sh http://127.0.0.1:PORT/api/v1/openapi.json [schemathesis run options]
# with tests/schemathesis/schemathesis.toml, whose headers take the session token from
# $CONCLAVE_TOKEN. Installs schemathesis once into target/schemathesis/venv (python3 -m
# venv; .ci/run installs python3-venv). The end-to-end test tests/e2e/schema.rs calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=4.32.5
VENV=target/schemathesis/venv
STAMP="$VENV/.installed-schemathesis-$VERSION"

# Both backends' tests start at once: one installs while the other waits on the lock.
mkdir -p target/schemathesis
exec 9>target/schemathesis/install.lock
flock 9
if [ ! -f "$STAMP" ]; then
  echo "schemathesis.sh: installing schemathesis $VERSION from PyPI into $VENV" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION"
  touch "$STAMP"
fi
flock -u 9
exec 9>&-

if [ "${1:-}" = "--version" ]; then
  exec "$VENV/bin/schemathesis" --version
fi
: "${CONCLAVE_TOKEN:?set CONCLAVE_TOKEN to a session token}"
exec "$VENV/bin/schemathesis" --config-file tests/schemathesis/schemathesis.toml run "$@"
