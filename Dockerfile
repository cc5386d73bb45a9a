# syntax=docker/dockerfile:1
# Pushfleet: the gateway and pushctl in one small image.
#   docker build -t pushfleet .
#   docker run -p 8080:8080 -p 9090:9090 pushfleet

FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not refetch the registry.
COPY Cargo.toml Cargo.lock rustfmt.toml clippy.toml ./
COPY gateway/Cargo.toml gateway/Cargo.toml
COPY publisher-cli/Cargo.toml publisher-cli/Cargo.toml
COPY tests/Cargo.toml tests/Cargo.toml
RUN mkdir -p gateway/src publisher-cli/src tests/src \
    && echo 'fn main() {}' > gateway/src/main.rs && touch gateway/src/lib.rs \
    && echo 'fn main() {}' > publisher-cli/src/main.rs && touch tests/src/lib.rs \
    && cargo fetch --locked
COPY gateway gateway
COPY publisher-cli publisher-cli
COPY tests tests
COPY clients/js clients/js
RUN touch gateway/src/main.rs gateway/src/lib.rs publisher-cli/src/main.rs \
    && cargo build --release --locked -p gateway -p publisher-cli \
    && strip target/release/gateway target/release/pushctl

FROM debian:bookworm-slim AS runtime
RUN groupadd --system --gid 10001 pushfleet \
    && useradd --system --uid 10001 --gid pushfleet --no-create-home --shell /usr/sbin/nologin pushfleet
COPY --from=build /src/target/release/gateway /usr/local/bin/gateway
COPY --from=build /src/target/release/pushctl /usr/local/bin/pushctl
USER 10001:10001
ENV PUSHFLEET_LISTEN=0.0.0.0:8080 \
    PUSHFLEET_INTERNAL_LISTEN=0.0.0.0:9090 \
    PUSHFLEET_LOG_FORMAT=json
EXPOSE 8080 9090
# No HEALTHCHECK: Kubernetes probes /healthz and /readyz.
ENTRYPOINT ["/usr/local/bin/gateway"]
