# syntax=docker/dockerfile:1
#
# Loom node image: the `loom` binary (package `loom-node`) with cluster.toml as its config.
#
#   docker build --build-arg LOOM_GIT_COMMIT=$(git rev-parse --short=12 HEAD) -t loom .
#
# Stage 1 `builder` (rust:1.95-bookworm): compiles `cargo build --release -p loom-node --locked`.
#   The C code built from crates (aws-lc-sys for rustls, ring, bundled SQLite) needs only a C/C++
#   toolchain, make, perl and pkg-config — no cmake, no OpenSSL/zlib headers (TLS is rustls).
#   The cargo registry, git checkouts and target/ are BuildKit cache mounts, so rebuilds reuse
#   downloaded crates and compiled dependencies; as a cache mount is not part of the image, the
#   binary is copied out of target/ in the same RUN step.
#   There is no .git in the build context (see .dockerignore): node/build.rs takes the commit
#   shown by `loom version` and `/version` from the LOOM_GIT_COMMIT build argument.
#
# Stage 2 `runtime` (debian:bookworm-slim): the binary, cluster.toml, CA certificates (for TLS to
#   S3/PostgreSQL) and curl (for the compose healthcheck), running as the non-root user `loom`
#   with its data dir /var/lib/loom. Every cluster.toml key can be overridden with LOOM_* env.

############################ builder ############################
FROM rust:1.95-bookworm AS builder

RUN apt-get update \
    && apt-get install -y --no-install-recommends make gcc g++ perl pkg-config \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# Commit recorded by node/build.rs (no .git in the context); "unknown" when not given.
ARG LOOM_GIT_COMMIT=""
ENV LOOM_GIT_COMMIT=${LOOM_GIT_COMMIT}

RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release -p loom-node --locked \
    && install -D -m 0755 /src/target/release/loom /out/loom

############################ runtime ############################
FROM debian:bookworm-slim AS runtime

# File Processing's tools: ffmpeg/ffprobe (audio, video), poppler (PDF info, text, pages);
# util-linux provides prlimit, which bounds each tool's memory and CPU time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl ffmpeg poppler-utils util-linux \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system loom \
    && useradd --system --gid loom --home-dir /var/lib/loom --shell /usr/sbin/nologin loom \
    && mkdir -p /var/lib/loom /etc/loom \
    && chown loom:loom /var/lib/loom

COPY --from=builder /out/loom /usr/local/bin/loom
COPY cluster.toml /etc/loom/cluster.toml

# The container listens on all interfaces; data (SQLite, local objects) goes to the volume.
ENV LOOM_DATA_DIR=/var/lib/loom \
    LOOM_BIND_ADDR=0.0.0.0

WORKDIR /var/lib/loom
VOLUME ["/var/lib/loom"]
USER loom

# Service ports: schema-registry 8010, privacy-filter 8011, device-identity 8012,
# event-router 8013, timeseries-aggregator 8020, file-processing 8021, dedup 8022,
# context-enrichment 8023, health-aggregator 8030, data-quality 8031; cluster port 4697.
EXPOSE 8010 8011 8012 8013 8020 8021 8022 8023 8030 8031
EXPOSE 4697/tcp 4697/udp

# Readiness of the health-aggregator service (open even when auth tokens are configured).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=5 \
    CMD curl -fsS http://localhost:8030/ready || exit 1

ENTRYPOINT ["loom"]
CMD ["run", "--config", "/etc/loom/cluster.toml"]
