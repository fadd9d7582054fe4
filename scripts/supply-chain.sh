#!/usr/bin/env bash
# Supply-chain checks of the dependency graph with cargo-deny (deny.toml): licences
# (only ones compatible with the AGPL), bans (no wildcard versions) and sources
# (crates.io only, no git). These need no network. The advisory check needs the RustSec
# advisory database, a git repository no registry reachable here ships: it runs only when
# the database is already on this machine (`cargo deny fetch` with network access, or a
# copy placed in $CARGO_HOME/advisory-dbs; see docs/security.md), and is skipped with a
# note otherwise. SUPPLY_CHAIN_ADVISORIES=required makes a missing database an error.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deny --version >/dev/null 2>&1; then
    echo "supply-chain: cargo-deny is missing: cargo install cargo-deny --locked" >&2
    exit 1
fi
# cargo-deny reads every crate of Cargo.lock, for every platform, from the local registry
# cache; a build for this platform leaves some out (wasm-bindgen, Android's and Windows'
# crates), and on a fresh machine the check then fails to start. The registry is
# reachable wherever a build is, so fetch them first.
cargo fetch --locked --quiet || echo "supply-chain: cargo fetch failed; checking with the crates already on this machine" >&2
cargo deny --offline check licenses bans sources

db_root=${CARGO_HOME:-$HOME/.cargo}/advisory-dbs
if compgen -G "$db_root/advisory-db-*/crates" >/dev/null; then
    cargo deny --offline check advisories
elif [ "${SUPPLY_CHAIN_ADVISORIES:-}" = required ]; then
    echo "supply-chain: no advisory database under $db_root (run 'cargo deny fetch' where the network allows)" >&2
    exit 1
else
    echo "supply-chain: advisories not checked: no RustSec database under $db_root and no network to fetch it (see docs/security.md)"
fi
