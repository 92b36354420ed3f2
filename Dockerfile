# One image for every role of the shop: compose runs it as `shop users`,
# `shop inventory`, `shop orders` and `shop gateway`. Build with
#   docker compose build          (or: docker build -t shop .)

# Build: protox compiles proto/ inside build.rs (no protoc), and migrations/,
# web/templates and web/static are embedded in the binary at compile time, so
# the source tree is all the build needs (.dockerignore keeps the rest out).
FROM rust:1.95.0-bookworm AS builder
WORKDIR /src
COPY . .
# The registry and target/ live in BuildKit cache mounts (BuildKit is
# docker build's default), so a rebuild after a code change recompiles the
# shop's crates, not every dependency. The binary is copied out in the same
# step: cache mounts are not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p shop \
    && install -m 0755 target/release/shop /usr/local/bin/shop

# Run: glibc from Debian's slim image (the builder is bookworm too) and
# Debian's CA bundle, taken from the builder: in compose every connection is
# plain TCP on the private network, but a managed Redis (`rediss://`) or NATS
# (`tls://`) is reached over TLS, and fred and async-nats trust the system's
# roots (rustls-native-certs; sqlx and lettre carry webpki roots of their
# own). SQLite is bundled and health checks are `shop healthcheck`: no curl.
FROM debian:bookworm-slim
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
RUN groupadd --system --gid 10001 shop \
    && useradd --system --uid 10001 --gid shop --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin shop \
    && mkdir -p /var/lib/shop \
    && chown shop:shop /var/lib/shop
COPY --from=builder /usr/local/bin/shop /usr/local/bin/shop
# Numeric, so a runtime (Kubernetes runAsNonRoot) can tell it is not root.
USER 10001:10001
# `shop all` (embedded, SQLite) keeps ./data here; the compose roles use
# PostgreSQL and write nothing.
WORKDIR /var/lib/shop
# gateway HTTP, users/inventory/orders gRPC, Prometheus /metrics
EXPOSE 8080 50051 50052 50053 2112
ENTRYPOINT ["shop"]
CMD ["all"]
# No HEALTHCHECK here: what is healthy depends on the role (an HTTP /healthz
# for the gateway, gRPC health for a service), so compose.yaml sets one per
# service with `shop healthcheck URL`.
