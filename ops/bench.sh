#!/usr/bin/env bash
# Throughput and latency of the shop's busiest reads, measured with wrk
# against a release build of `shop all` (embedded: SQLite, memory sessions
# and cache) on this machine. Prints one line per scenario.
#
#   ops/bench.sh [SECONDS]        (default 10 s per scenario)
#   SHOP_BIN=/path/to/shop ops/bench.sh   (measure that binary instead of building)
#
# Settings pass through: e.g. `SHOP_LOG_FORMAT=json ops/bench.sh`,
# `OTEL_SDK_DISABLED=true ops/bench.sh` (no spans at all: what tracing costs), or
# `OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 ops/bench.sh` with a
# collector listening, to see what exporting traces costs.
# Needs wrk (Debian: apt-get install wrk) and curl; builds the release binary
# when it is missing or older than the sources.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=${1:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-2}
command -v wrk >/dev/null || { echo "ops/bench.sh needs wrk (apt-get install wrk)" >&2; exit 1; }

# SHOP_BIN: another build of the shop to measure (an older commit's, to
# compare before and after a change on the same machine).
if [[ -z "${SHOP_BIN:-}" ]]; then
    cargo build --release -p shop --quiet
    SHOP_BIN=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/shop
fi
BIN=$SHOP_BIN

WORK=$(mktemp -d "${TMPDIR:-/tmp}/shop-bench.XXXXXX")
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
HTTP=$(free_port)
export SHOP_DATA_DIR="$WORK/data" SHOP_HTTP_ADDR="127.0.0.1:$HTTP" SHOP_METRICS_ADDR="127.0.0.1:$(free_port)" \
    SHOP_USERS_ADDR="127.0.0.1:$(free_port)" SHOP_INVENTORY_ADDR="127.0.0.1:$(free_port)" \
    SHOP_ORDERS_ADDR="127.0.0.1:$(free_port)"
"$BIN" all >"$WORK/shop.log" 2>&1 &
SHOP_PID=$!
trap 'kill -TERM $SHOP_PID 2>/dev/null; wait $SHOP_PID 2>/dev/null; rm -rf "$WORK"' EXIT
BASE="http://127.0.0.1:$HTTP"
for _ in $(seq 100); do curl -fsS -o /dev/null "$BASE/healthz" 2>/dev/null && break; sleep 0.1; done

# A catalogue of 50 products, made by an admin.
JAR="$WORK/jar"
json() { curl -fsS -b "$JAR" -c "$JAR" -H 'Accept: application/json' -H 'Content-Type: application/json' -H "Origin: $BASE" "$@"; }
json -o /dev/null -X POST "$BASE/users/register" -d '{"name":"Bench","email":"bench@example.com","password":"correct horse battery"}'
"$BIN" make-admin bench@example.com >/dev/null
json -o /dev/null -X POST "$BASE/users/login" -d '{"email":"bench@example.com","password":"correct horse battery"}'
for i in $(seq 50); do
    json -o /dev/null -X POST "$BASE/products" -d "{\"name\":\"Product $i\",\"price_minor\":$((100 + i)),\"stock\":1000}"
done
PRODUCT=$(json "$BASE/products?page=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["products"][0]["id"])')

echo "shop all (embedded, release), wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, $(nproc) cores"
printf '%-34s %12s %10s %10s\n' scenario requests/s p50 p99
bench() {
    local name=$1 path=$2
    shift 2
    local out
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@" "$BASE$path")
    if grep -q "Non-2xx" <<<"$out"; then echo "$name: some answers were not 2xx" >&2; grep "Non-2xx" <<<"$out" >&2; exit 1; fi
    printf '%-34s %12s %10s %10s\n' "$name" "$(awk '/^Requests\/sec/ {print $2}' <<<"$out")" \
        "$(awk '$1 == "50%" {print $2}' <<<"$out")" "$(awk '$1 == "99%" {print $2}' <<<"$out")"
}
bench "GET /products (JSON, a page)" "/products" -H 'Accept: application/json'
bench "GET /products/{id} (JSON)" "/products/$PRODUCT" -H 'Accept: application/json'
bench "GET /products (HTML page)" "/products"
bench "GET /healthz" "/healthz"
