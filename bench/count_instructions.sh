#!/usr/bin/env bash
# Instructions per cached `GET /products/{id}` JSON read, counted by
# valgrind's callgrind in the shop's process (user space only: the kernel's
# loopback TCP is not counted), and the same for bare axum (bench-reference)
# serving the very bytes the shop answered. Counts do not move with the load
# on the machine, unlike the rates of ops/bench.sh: use them to tell one
# build from another on a busy or a slower day (docs/performance.md).
#
#   bench/count_instructions.sh [REQUESTS]     (default 500)
#   SHOP_BIN=/path/to/shop BENCH_REFERENCE_BIN=/path/to/bench-reference   (default: release builds)
#   COUNT_OUT=dir      keep the callgrind files there (callgrind_annotate them)
#
# Settings pass through: `SHOP_LOG_FORMAT=json bench/count_instructions.sh`.
# The shop runs embedded with the demo catalogue; 50 reads warm the cache
# first, then REQUESTS reads on one kept-alive connection are counted. Needs valgrind, curl and python3.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REQUESTS=${1:-500}
[[ "$REQUESTS" =~ ^[1-9][0-9]*$ ]] || { echo "usage: bench/count_instructions.sh [REQUESTS > 0]" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
if [[ -z "${SHOP_BIN:-}" || -z "${BENCH_REFERENCE_BIN:-}" ]]; then
    cargo build --release -q -p shop -p bench-reference
    target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    SHOP_BIN=${SHOP_BIN:-$target/release/shop}
    BENCH_REFERENCE_BIN=${BENCH_REFERENCE_BIN:-$target/release/bench-reference}
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/shop-count.XXXXXX")
OUT=${COUNT_OUT:-$WORK}
mkdir -p "$OUT" "$WORK/bodies"
PID=""
cleanup() {
    set +e
    [[ -n "$PID" ]] && { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; }
    rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "bench/count_instructions.sh: $*" >&2; exit 1; }
# callgrind_control says what it sends on stderr: quiet unless it fails.
control() { callgrind_control "$@" >/dev/null 2>&1 || fail "callgrind_control $* failed"; }
# wait_for URL NAME LOG: until URL answers (valgrind starts slowly), or
# fails with the end of LOG.
wait_for() {
    for _ in $(seq 600); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
    tail -n 20 "$3" >&2
    fail "$2 did not answer $1 within 60 s"
}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# count NAME URL: starts nothing; counts REQUESTS reads of URL in the
# callgrind-run process $PID and prints instructions per read.
count() {
    local name=$1 url=$2 urls=() total
    for _ in $(seq 50); do curl -fsS -o /dev/null -H 'Accept: application/json' "$url"; done
    for _ in $(seq "$REQUESTS"); do urls+=(-o /dev/null "$url"); done
    control -i on "$PID"
    curl -fsS -H 'Accept: application/json' "${urls[@]}"
    control -i off "$PID"
    control -d "$PID"
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=""
    total=$(callgrind_annotate "$(ls -S "$OUT/$name".out* | head -1)" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    [[ "$total" =~ ^[0-9]+$ ]] || fail "no instruction count for $name in $OUT"
    printf '%-40s %9d instructions per read\n' "$name" "$((total / REQUESTS))"
}

# The shop: embedded, the demo catalogue.
http=$(free_port)
export SHOP_DATA_DIR="$WORK/data" SHOP_HTTP_ADDR="127.0.0.1:$http" SHOP_METRICS_ADDR="127.0.0.1:$(free_port)" \
    SHOP_USERS_ADDR="127.0.0.1:$(free_port)" SHOP_INVENTORY_ADDR="127.0.0.1:$(free_port)" \
    SHOP_ORDERS_ADDR="127.0.0.1:$(free_port)"
"$SHOP_BIN" demo-catalogue >"$WORK/demo.log" 2>&1 || { cat "$WORK/demo.log" >&2; exit 1; }
rm -f "$OUT"/shop.out*
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/shop.out" "$SHOP_BIN" all >"$WORK/shop.log" 2>&1 &
PID=$!
base="http://127.0.0.1:$http"
wait_for "$base/healthz" "the shop" "$WORK/shop.log"
id=$(curl -fsS -H 'Accept: application/json' "$base/products" | python3 -c 'import json,sys; print(json.load(sys.stdin)["products"][0]["id"])')
curl -fsS -o "$WORK/bodies/product.json" -H 'Accept: application/json' "$base/products/$id"
count shop "$base/products/$id"

# Bare axum, the same bytes.
ref=$(free_port)
rm -f "$OUT"/reference.out*
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/reference.out" \
    "$BENCH_REFERENCE_BIN" serve "127.0.0.1:$ref" "$WORK/bodies" >"$WORK/reference.log" 2>&1 &
PID=$!
wait_for "http://127.0.0.1:$ref/product.json" "bench-reference" "$WORK/reference.log"
count reference "http://127.0.0.1:$ref/product.json"
[[ -n "${COUNT_OUT:-}" ]] && echo "callgrind files in $OUT (callgrind_annotate --inclusive=yes $OUT/shop.out*)"
exit 0
