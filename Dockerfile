# syntax=docker/dockerfile:1
# Conclave's container image: one static-ish `conclave` binary on a slim Debian base,
# run as an unprivileged user. The same image serves every role (`serve --role
# api|worker|all`) and runs `conclave migrate` (the Helm chart's migration hook).
#
#   docker build -t conclave:0.1.0 .
#
# The build needs only crates.io (or a vendored registry, see docs/deployment.md,
# "Air-gapped install"); the web client and the migrations are embedded in the binary.
# Both base images can be swapped for mirrored copies:
#   docker build --build-arg RUST_IMAGE=registry.internal/rust:1-bookworm \
#                --build-arg RUNTIME_IMAGE=registry.internal/debian:bookworm-slim .

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
# C libraries diesel links against (the rust image usually has them; installing is cheap).
# Versions are not pinned: Debian's security updates replace them within a release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libpq-dev libsqlite3-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY crates crates
COPY migrations migrations
COPY web web
COPY conclave.sample.toml ./
RUN cargo build --release --locked -p conclave-server \
 && install -m 0755 target/release/conclave /usr/local/bin/conclave

FROM ${RUNTIME_IMAGE}
# Runtime libraries only: libpq (PostgreSQL), SQLite, OpenSSL (also a dependency of libpq;
# the LDAP client's TLS uses it) and the CA roots for TLS to the directory, SSO and syslog.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libpq5 libsqlite3-0 libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 conclave \
 && useradd --system --uid 10001 --gid conclave --home-dir /var/lib/conclave \
      --no-create-home --shell /usr/sbin/nologin conclave \
 && install -d -o conclave -g conclave -m 0750 /var/lib/conclave
COPY --from=build /usr/local/bin/conclave /usr/local/bin/conclave
# Listen on every interface inside the container; data under the volume. A config file
# (CONCLAVE_CONFIG) and other CONCLAVE_* variables override these.
ENV CONCLAVE_BIND=0.0.0.0:8080 \
    CONCLAVE_DATA_DIR=/var/lib/conclave
WORKDIR /var/lib/conclave
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/conclave"]
CMD ["serve"]
