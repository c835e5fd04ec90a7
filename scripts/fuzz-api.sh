#!/usr/bin/env bash
# Fuzzes every port's OpenAPI document with schemathesis against a live node built from the
# tree: one `loom` on the embedded default plus the suite's Kafka broker, with bearer tokens on,
# then `schemathesis run` per port with every check except positive_data_acceptance (README,
# "API contract" says why), a fixed seed and a fixed example budget. Any failure fails the stage.
#
#   scripts/fuzz-api.sh            all ten ports (needs scripts/infra.sh up and a built binary)
#   scripts/fuzz-api.sh 8013 8020  only these
#
# Env: LOOM_BIN (default $CARGO_TARGET_DIR/debug/loom or target/debug/loom),
# LOOM_FUZZ_EXAMPLES (per operation, default 40), LOOM_FUZZ_SEED (default 20261207),
# LOOM_FUZZ_ADDR (default 127.0.0.9), LOOM_FUZZ_OUT (reports, default target/fuzz-api).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck disable=SC1091
source "${LOOM_INFRA_DIR:-/tmp/loom-infra}/env"
BIN=${LOOM_BIN:-${CARGO_TARGET_DIR:-target}/debug/loom}
ST=${LOOM_TEST_SCHEMATHESIS:?run scripts/infra.sh up first}
EXAMPLES=${LOOM_FUZZ_EXAMPLES:-40}
SEED=${LOOM_FUZZ_SEED:-20261207}
ADDR=${LOOM_FUZZ_ADDR:-127.0.0.9}
OUT=${LOOM_FUZZ_OUT:-target/fuzz-api}
PORTS=("$@")
[ ${#PORTS[@]} -gt 0 ] || PORTS=(8010 8011 8012 8013 8020 8021 8022 8023 8030 8031)
ADMIN=fuzz-admin-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
READ=fuzz-read-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')

rm -rf "$OUT"; mkdir -p "$OUT/data"
LOOM_DATA_DIR="$OUT/data" LOOM_BIND_ADDR="$ADDR" LOOM_NODE_NAME=fuzz \
  LOOM_KAFKA_BROKERS="$LOOM_TEST_KAFKA_BROKERS" LOOM_AUTH_TOKENS="fuzz:admin:$ADMIN,viewer:read:$READ" \
  LOOM_LOG=warn "$BIN" run >"$OUT/node.log" 2>&1 &
NODE=$!
trap 'kill "$NODE" 2>/dev/null; wait "$NODE" 2>/dev/null || true' EXIT
for p in "${PORTS[@]}"; do
  for _ in $(seq 1 300); do curl -sf "http://$ADDR:$p/ready" >/dev/null && break; sleep 0.1; done
  curl -sf "http://$ADDR:$p/ready" >/dev/null || { tail -20 "$OUT/node.log" >&2; echo "fuzz-api: :$p never ready" >&2; exit 1; }
done

failed=0
printf '%-6s %6s %9s %8s %8s %8s  %s\n' port ops cases links failed seconds result >"$OUT/summary.txt"
for p in "${PORTS[@]}"; do
  start=$(date +%s.%N)
  rc=0
  # The stateful phase first, on the fresh node: it chains create -> read/update/delete through
  # the documented examples, which the other phases would otherwise have created already (409).
  for phases in stateful examples,coverage,fuzzing; do
    "$ST" run "http://$ADDR:$p/openapi.json" -H "Authorization: Bearer $ADMIN" \
      --phases "$phases" --checks all --exclude-checks positive_data_acceptance \
      --seed "$SEED" --max-examples "$EXAMPLES" --workers 1 --generation-database none \
      --no-color --report junit --report-junit-path "$OUT/junit-$p-${phases%%,*}.xml" >"$OUT/$p.$phases.txt" 2>&1 || {
      code=$?
      # A port whose operations link nothing (8023: no resources) has no stateful phase to run.
      [ "$phases" = stateful ] && grep -q 'No links for stateful testing' "$OUT/$p.$phases.txt" || rc=$code
    }
    cat "$OUT/$p.$phases.txt" >>"$OUT/$p.txt"; rm -f "$OUT/$p.$phases.txt"
  done
  secs=$(printf '%.1f' "$(echo "$(date +%s.%N) - $start" | bc)")
  ops=$(sed -n 's/^ *Tested: \([0-9]*\).*/\1/p' "$OUT/$p.txt" | tail -1)
  cases=$(sed -n 's/^ *\([0-9]*\) generated.*/\1/p' "$OUT/$p.txt" | paste -sd+ | bc)
  links=$(sed -n 's/^ *API Links: *\([0-9]*\) covered \/ [0-9]* selected \/ \([0-9]*\) total.*/\1\/\2/p' "$OUT/$p.txt" | head -1)
  fails=$(grep -cE '^- ST[0-9]+ ' "$OUT/$p.txt" || true)
  result=ok; [ "$rc" -eq 0 ] || { result="FAILED (exit $rc, see $OUT/$p.txt)"; failed=1; }
  printf '%-6s %6s %9s %8s %8s %8s  %s\n' "$p" "${ops:-?}" "${cases:-?}" "${links:--}" "$fails" "$secs" "$result" >>"$OUT/summary.txt"
done
cat "$OUT/summary.txt" >&2
if [ "$failed" -ne 0 ]; then
  for p in "${PORTS[@]}"; do
    grep -q '^=* .*\(failure\|error\)' "$OUT/$p.txt" && { echo "---- :$p" >&2; sed -n '/^=* \(ERRORS\|FAILURES\) =*$/,/^=* SUMMARY/p' "$OUT/$p.txt" | head -150 >&2; }
  done
  exit 1
fi
