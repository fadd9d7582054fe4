# Conclave: the two commands a newcomer needs are `make run` and `make test`.
CARGO ?= cargo

.PHONY: run test soak fuzz supply-chain bench bench-load bench-compare lint fmt docs migrate clean

# Seconds each fuzz target runs in `make test` (the smoke run) and in `make fuzz`.
FUZZ_SMOKE_SECONDS ?= 10
FUZZ_SECONDS ?= 300

## Serve on http://127.0.0.1:8080 with SQLite under ./data; prints how to log in.
run:
	$(CARGO) run -p conclave-server --bin conclave -- serve

## Apply database migrations (the server also does this at start by default).
migrate:
	$(CARGO) run -p conclave-server --bin conclave -- migrate

## Every unit, integration and end-to-end test, on SQLite and on a throwaway
## PostgreSQL cluster that `with-postgres` starts on a free loopback port and removes;
## first the Helm chart and the Dockerfile (scripts/helm-check.sh: helm lint, the
## rendered manifests against the Kubernetes schemas, the rendered config in `conclave`),
## the dependency graph (scripts/supply-chain.sh: cargo-deny's licence, ban and source
## checks) and a short run of every fuzz target (scripts/fuzz-smoke.sh, FUZZ_SMOKE_SECONDS
## each; needs cargo-fuzz).
test:
	$(CARGO) build --workspace --all-targets
	HELM_CHECK_CONCLAVE=$${CARGO_TARGET_DIR:-target}/debug/conclave scripts/helm-check.sh
	scripts/supply-chain.sh
	scripts/fuzz-smoke.sh $(FUZZ_SMOKE_SECONDS)
	$(CARGO) run -q -p conclave-testkit --bin with-postgres -- $(CARGO) test --workspace --no-fail-fast

## Longer crash-safety runs than `make test`'s: the load generator sends for
## SOAK_SECONDS (300) while the server is killed with SIGKILL every few seconds, on SQLite
## and PostgreSQL, then every acknowledged message is checked in the database; and the
## PostgreSQL-restart and full-disk tests.
soak:
	$(CARGO) build --workspace --all-targets
	CONCLAVE_SOAK_SECONDS=$${SOAK_SECONDS:-300} $(CARGO) run -q -p conclave-testkit --bin with-postgres -- \
		$(CARGO) test -p conclave-server --test e2e crash:: -- --nocapture --test-threads 1

## Every fuzz target for FUZZ_SECONDS (300) each, keeping what they find in
## target/fuzz-corpus between runs (the seeds stay in fuzz/corpus). Needs cargo-fuzz.
fuzz:
	mkdir -p target/fuzz-corpus
	FUZZ_WORK=$(CURDIR)/target/fuzz-corpus scripts/fuzz-smoke.sh $(FUZZ_SECONDS)

## cargo-deny on the dependency graph; advisories too when the RustSec database is here.
supply-chain:
	scripts/supply-chain.sh

## Benchmarks (release build): the timer worker under one million pending timers, the
## retention sweeper over a large archive under live traffic, and compliance exports
## (250,000 messages by default; EXPORT_BENCH_MESSAGES=1000000 for the full size), on
## SQLite and on a throwaway PostgreSQL. Prints tables; asserts nothing about time.
## Then the load scenarios (`bench-load`).
bench:
	$(CARGO) run -q --release -p conclave-testkit --bin with-postgres -- $(CARGO) bench -p conclave-messaging --bench timers
	$(CARGO) run -q --release -p conclave-testkit --bin with-postgres -- $(CARGO) bench -p conclave-messaging --bench sweeper
	$(CARGO) run -q --release -p conclave-testkit --bin with-postgres -- $(CARGO) bench -p conclave-messaging --bench export
	$(MAKE) bench-load

## Load scenarios of conclave-bench (steady, burst, fanout, connections) against a release
## server on SQLite and on a throwaway PostgreSQL; sizes through BENCH_SCENARIOS,
## BENCH_BACKENDS, BENCH_ARGS and BENCH_<SCENARIO>_ARGS (see scripts/bench-load.sh).
bench-load:
	$(CARGO) run -q --release -p conclave-testkit --bin with-postgres -- scripts/bench-load.sh

## The same scenarios against Conclave and Matrix Synapse (installed from PyPI into
## target/synapse-venv), both on PostgreSQL, with ratios; see scripts/bench-compare.sh.
bench-compare:
	$(CARGO) run -q --release -p conclave-testkit --bin with-postgres -- scripts/bench-compare.sh

## Formatting and clippy with warnings as errors.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## API documentation of every crate, in target/doc.
docs:
	$(CARGO) doc --workspace --no-deps

clean:
	$(CARGO) clean
