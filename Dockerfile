# syntax=docker/dockerfile:1
#
# driftwatch as a small, non-root container image.
#   docker build -t driftwatch .
#   docker run --rm driftwatch run --brokers kafka:9092
# The image serves /metrics, /healthz and /readyz on 0.0.0.0:9464 (DRIFTWATCH_METRICS_ADDR).

# ---- build: the Rust toolchain plus what librdkafka's bundled build needs (rdkafka compiles
# librdkafka from source and links it statically, with a static zlib).
FROM rust:1.95-slim-trixie AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential perl python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Static zlib; no debug info in the image's binary.
ENV LIBZ_SYS_STATIC=1 \
    CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols

# Dependencies first, in their own layer: editing driftwatch's code does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches models \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs && echo 'fn main() {}' > benches/engine.rs \
 && cargo build --release --locked \
 && rm -rf src benches target/release/.fingerprint/driftwatch-*

COPY src src
COPY models models
COPY benches benches
RUN cargo build --release --locked --bin driftwatch \
 && cp target/release/driftwatch /driftwatch

# ---- runtime: glibc and libgcc only (distroless), running as the image's non-root user.
FROM gcr.io/distroless/cc-debian13:nonroot
COPY --from=build /driftwatch /usr/local/bin/driftwatch
COPY models /etc/driftwatch/models
COPY schemas /usr/share/driftwatch/schemas
USER nonroot:nonroot
ENV DRIFTWATCH_METRICS_ADDR=0.0.0.0:9464
EXPOSE 9464
# Alive = the endpoint answers; readiness (/readyz) is for orchestrators that route or wait.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s \
  CMD ["/usr/local/bin/driftwatch", "probe", "--path", "/healthz"]
ENTRYPOINT ["/usr/local/bin/driftwatch"]
CMD ["run"]
