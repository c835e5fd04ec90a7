#!/usr/bin/env bash
# The whole test suite, from a fresh machine of this kind: installs and starts the real
# infrastructure on loopback (scripts/infra.sh), checks formatting, the Kubernetes manifests
# (scripts/k8s-validate.sh) and lints, builds the `loom` binary and runs every test (unit,
# integration over real sockets, real stores and brokers).
# .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*" >&2; }

step "infrastructure"
scripts/infra.sh up
# shellcheck disable=SC1091
source "${LOOM_INFRA_DIR:-/tmp/loom-infra}/env"

step "cargo fmt --check"
cargo fmt --all -- --check

step "kubernetes manifests (kubernetes-validate)"
scripts/k8s-validate.sh

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build the loom binary"
cargo build -p loom-node --locked

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
  cargo test --workspace --locked --doc
else
  cargo test --workspace --locked --no-fail-fast
fi
step "API fuzzing (schemathesis on every port's OpenAPI document)"
scripts/fuzz-api.sh

step "all green"
