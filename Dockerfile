# syntax=docker/dockerfile:1
#
# One image for the whole rideshare package: the service (`rideshare`, the default command) and the
# load generator (`loadgen`). docker-compose.yml runs it four times (three regions + load generator).
# tests/stack_wiring/ checks that this file builds and ships every binary `cargo build --release`
# builds.

# ---- builder: the toolchain (Rust >= the package's and its locked dependencies' rust-version) ----
FROM rust:1.91.1-slim-bookworm AS builder
# make: the service's allocator (tikv-jemallocator) builds jemalloc from source.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /build

# Dependencies first, in their own layer: with stub sources for the app, this build compiles only
# the locked dependency graph and the workspace's library crates, so editing src/ does not rebuild
# every crate.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN mkdir -p src/bin \
    && touch src/lib.rs \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > src/bin/loadgen.rs \
    && cargo build --release --locked \
    && rm -rf src

# The real sources. COPY keeps the files' old modification times, which would leave the stub
# artifacts looking fresh: touch them so cargo rebuilds the package itself.
COPY src ./src
RUN find src -name '*.rs' -exec touch {} + \
    && cargo build --release --locked

# ---- runtime: glibc like the builder, CA certificates for HTTPS (e.g. Grafana Cloud), no root ----
FROM debian:bookworm-20260421-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 rideshare \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin rideshare

# Symbols stay in: the release profile keeps line tables and strip = false, so the profiler can name
# every frame of the flame graph. Do not strip these binaries.
COPY --from=builder /build/target/release/rideshare /usr/local/bin/rideshare
COPY --from=builder /build/target/release/loadgen /usr/local/bin/loadgen

USER 10001:10001
EXPOSE 5000
# `rideshare healthcheck` (exit 0 if http://127.0.0.1:5000/ answers 2xx) is the container health
# check; docker-compose.yml declares it. The load generator runs `/usr/local/bin/loadgen ...`.
CMD ["/usr/local/bin/rideshare"]
