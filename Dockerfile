# cart-service image: a cached dependency layer (cargo-chef), a `--locked` release build
# of the service only, and a distroless nonroot runtime holding the binary and an empty
# /var/log/app owned by UID 65532, so a fresh volume mounted there is writable.
# Build it with `cargo xtask image`, which passes the build arguments below.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS chef
# cargo-chef turns the workspace's manifests into a recipe, so dependencies build in a
# layer that only changes when Cargo.toml or Cargo.lock do.
RUN cargo install cargo-chef --locked --version 0.1.77
WORKDIR /build

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /build/recipe.json recipe.json
RUN cargo chef cook --release --locked --package cart-service --recipe-path recipe.json
COPY . .
# The same command `cargo xtask ci` runs (its "release" step), so a build that breaks
# here breaks in CI first.
RUN cargo build --release --locked -p cart-service \
    && install -D -m 0755 target/release/cart-service /out/bin/cart-service \
    && mkdir -p /out/log

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ARG VERSION=0.0.0-dev
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="cart-service" \
      org.opencontainers.image.description="A shopping-cart microservice over Redis, built to run on Kubernetes" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://example.invalid/cart-service" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"
COPY --from=builder /out/bin/cart-service /usr/local/bin/cart-service
# Docker copies this directory's owner into a new named volume mounted over it: without
# it the service (UID 65532) could not create its log file there.
COPY --from=builder --chown=65532:65532 /out/log /var/log/app
USER 65532:65532
EXPOSE 8080
# Distroless has no shell or curl: the binary probes its own /livez.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/cart-service", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/cart-service"]
