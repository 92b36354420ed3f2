#!/usr/bin/env bash
# The shop measured against its limits in one run: each scenario with wrk
# against `shop all`, first embedded (SQLite, memory sessions and cache), then
# on PostgreSQL + Redis + NATS JetStream when all three answer, next to a
# reference measured in the same run on the same machine, and the ratio:
#
#   - HTTP reads: bench-reference (bench/reference), bare axum with no
#     middleware, serving the very bytes the shop answered for that request
#     (captured from the shop at the start of the run);
#   - sign-in: the raw argon2id hash rate with the shop's parameters, on as
#     many threads as cores;
#   - checkout: pgbench TPC-B (scale 10, 16 clients) on the same PostgreSQL
#     the shop then uses (SHOP_BENCH_POSTGRES_URL), right before the shop's
#     checkout there.
# Besides the saturating runs: cached product JSON paced at half the rate it
# reached (its p99 there), and paced at 1,000 requests/s alone and again
# while sign-ins saturate the hashing (what sign-in load does to readers).
# Plus RSS idle and after load, and the time from start to the first 200 on
# /healthz. Prints one Markdown table and writes BENCH_OUT (JSON). Every
# scenario must answer 2xx only, and each checkout is followed by the
# oversell check (confirmed orders x quantity == stock taken, read through
# the JSON API); either failing ends the run non-zero. Speed never does.
#
#   ops/bench.sh [SECONDS] [--short]   (default 10 s per scenario; --short or
#                                       BENCH_SHORT=1: 2 s, for CI)
#   SHOP_BIN=/path/to/shop             measure that binary instead of building
#   BENCH_REFERENCE_BIN=/path/to/bench-reference   likewise for the reference
#   BENCH_OUT=file.json                (default target/bench/latest.json)
#   BENCH_CONNECTIONS (64), BENCH_THREADS (2), BENCH_PRODUCTS (1000; 200 when short)
#   BENCH_MODES (embedded,postgres) and BENCH_GROUPS (reads,signin,checkout):
#                                       a part of the run, e.g. BENCH_MODES=postgres
#                                       BENCH_GROUPS=checkout while working on checkout
#   SHOP_BENCH_POSTGRES_URL            (default postgres://postgres@127.0.0.1:5432;
#                                       "none" skips pgbench and the PostgreSQL shop)
#   SHOP_BENCH_REDIS_URL (redis://127.0.0.1:6379), SHOP_BENCH_NATS_URL
#   (nats://127.0.0.1:4222): the PostgreSQL shop's Redis and NATS; it gets
#   databases, a key prefix and a stream of its own, all removed at the end.
#
# Settings pass through: e.g. `SHOP_LOG_FORMAT=json ops/bench.sh`,
# `OTEL_SDK_DISABLED=true ops/bench.sh` (no spans at all: what tracing costs).
# Needs wrk (Debian: apt-get install wrk), curl and python3; pgbench and
# psql (postgresql-client) for the checkout reference.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

SHORT=${BENCH_SHORT:-}
DURATION=""
for arg in "$@"; do
    case $arg in
        --short) SHORT=1 ;;
        *[!0-9]* | "") echo "usage: ops/bench.sh [SECONDS] [--short]" >&2; exit 2 ;;
        *) DURATION=$arg ;;
    esac
done
[[ "$SHORT" == 0 ]] && SHORT=""
DURATION=${DURATION:-$([[ -n "$SHORT" ]] && echo 2 || echo 10)}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-2}
# A short run (CI, a debug build) makes a catalogue of 200: making 1,000 takes ~20 s there.
PRODUCTS=${BENCH_PRODUCTS:-$([[ -n "$SHORT" ]] && echo 200 || echo 1000)}
PG_URL=${SHOP_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
REDIS_URL=${SHOP_BENCH_REDIS_URL:-redis://127.0.0.1:6379}
NATS_URL=${SHOP_BENCH_NATS_URL:-nats://127.0.0.1:4222}
BENCH_OUT=${BENCH_OUT:-$ROOT/target/bench/latest.json}
MODES=${BENCH_MODES:-embedded,postgres}
GROUPS_WANTED=${BENCH_GROUPS:-reads,signin,checkout}
command -v wrk >/dev/null || { echo "ops/bench.sh needs wrk (apt-get install wrk)" >&2; exit 1; }

target_dir() { cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])'; }
BUILD="release build"
if [[ -z "${SHOP_BIN:-}" ]]; then
    cargo build --release -p shop -p bench-reference --quiet
    SHOP_BIN=$(target_dir)/release/shop
    BENCH_REFERENCE_BIN=${BENCH_REFERENCE_BIN:-$(target_dir)/release/bench-reference}
else
    BUILD="SHOP_BIN=$SHOP_BIN"
fi
if [[ -z "${BENCH_REFERENCE_BIN:-}" ]]; then
    cargo build --release -p bench-reference --quiet
    BENCH_REFERENCE_BIN=$(target_dir)/release/bench-reference
fi
BIN=$SHOP_BIN
REF=$BENCH_REFERENCE_BIN
HELP="$ROOT/bench/bench.py"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/shop-bench.XXXXXX")
SHOP_PID="" REF_PID="" PG_DB=""
# The PostgreSQL shop's names on the shared servers (databases NAME_users…,
# keys NAME:*, stream NAME_EVENTS), removed by forget_shared.
SHARED_NAME="shop_bench_$$_$RANDOM"
SHARED_USED=""
cleanup() {
    local status=$?
    set +e
    stop_shop
    [[ -n "$REF_PID" ]] && { kill -TERM "$REF_PID" 2>/dev/null; wait "$REF_PID" 2>/dev/null; }
    [[ -n "$PG_DB" ]] && psql "$PG_URL/postgres" -XAtqw -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1
    forget_shared
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
fail() { echo "ops/bench.sh: $*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
rss_kib() { awk -v key="$2:" '$1 == key {print $2}' "/proc/$1/status"; }
now_ms() { date +%s%3N; }
# wanted GROUP: whether BENCH_GROUPS asks for that group of scenarios.
wanted() { [[ ,$GROUPS_WANTED, == *,$1,* ]]; }
stop_shop() {
    [[ -n "$SHOP_PID" ]] || return 0
    kill -TERM "$SHOP_PID" 2>/dev/null
    wait "$SHOP_PID" 2>/dev/null
    SHOP_PID=""
}
# What the PostgreSQL shop leaves on the shared servers: its databases, its
# Redis keys and its NATS stream.
forget_shared() {
    [[ -n "$SHARED_USED" ]] || return 0
    SHARED_USED=""
    for db in users inventory orders; do
        psql "$PG_URL/postgres" -XAtqw -c "DROP DATABASE IF EXISTS ${SHARED_NAME}_$db WITH (FORCE)" >/dev/null 2>&1
    done
    python3 "$HELP" forget "$REDIS_URL" "$SHARED_NAME:" "$NATS_URL" "${SHARED_NAME^^}_EVENTS" ||
        echo "ops/bench.sh: could not remove all of ${SHARED_NAME}'s keys and stream" >&2
}

# ------------------------------------------------------------ the references
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
BODIES="$WORK/bodies"
mkdir -p "$BODIES"
REF_PORT=""
start_reference() {
    REF_PORT=$(free_port)
    "$REF" serve "127.0.0.1:$REF_PORT" "$BODIES" >"$WORK/reference.log" 2>&1 &
    REF_PID=$!
    for _ in $(seq 500); do curl -fsS -o /dev/null "http://127.0.0.1:$REF_PORT/healthz" 2>/dev/null && break; sleep 0.01; done
    curl -fsS -o /dev/null "http://127.0.0.1:$REF_PORT/product.json" || fail "the reference server did not start"
}

# run_wrk NAME KIND EXTRA_JSON CONNECTIONS URL [wrk options]: one scenario;
# any answer not 2xx fails the run.
run_wrk() {
    local name=$1 kind=$2 extra=$3 connections=$4 url=$5
    shift 5
    local out="$WORK/wrk-$name.txt"
    wrk -t"$THREADS" -c"$connections" -d"${DURATION}s" --latency "$@" "$url" >"$out" 2>&1 ||
        { cat "$out" >&2; fail "wrk failed on $name"; }
    if grep -q "Non-2xx" "$out"; then
        cat "$out" >&2
        fail "$name: some answers were not 2xx"
    fi
    grep -qE '^ *[1-9][0-9]* requests in' "$out" || { cat "$out" >&2; fail "$name: no request answered"; }
    # The shop's RSS right after each of its scenarios (what grows it).
    [[ $kind == reference ]] || extra="${extra%\}}, \"mode\": \"$MODE\", \"rss_after_kib\": $(rss_kib "$SHOP_PID" VmRSS)}"
    python3 "$HELP" wrk "$name" "$kind" "$out" "$extra" >>"$RESULTS"
}
# paced.lua: each connection waits DELAY ms before each request, so C
# connections ask for about C * 1000 / DELAY requests a second whatever the
# answers' speed (wrk cannot hold a rate by itself; a short answer time adds
# to the wait, so the rate reached is a little under the one asked).
paced_lua() {
    cat <<EOF
wrk.headers["Accept"] = "application/json"
function delay()
    return $1
end
EOF
}
# paced NAME LABEL RATE CONNECTIONS: cached product JSON at about RATE
# requests/s (the wait is whole milliseconds: more connections, finer rates).
paced() {
    local name=$1 label=$2 rate=$3 connections=$4
    local delay_ms=$(( connections * 1000 / (rate > 0 ? rate : 1) ))
    (( delay_ms >= 1 )) || delay_ms=1
    paced_lua "$delay_ms" >"$WORK/paced-$name.lua"
    run_wrk "$name" paced "{\"label\": \"$label\", \"asked_rate\": $rate}" "$connections" \
        "$BASE/products/$PRODUCT" -s "$WORK/paced-$name.lua"
}
# read_pair NAME LABEL BODY PATH [headers]: the shop's read, then (once per
# run, on the embedded shop) the reference's same bytes.
read_pair() {
    local name=$1 label=$2 body=$3 path=$4
    shift 4
    echo "  $label" >&2
    run_wrk "$PREFIX$name" read "{\"label\": \"$label\", \"reference\": \"ref-$body\"}" "$CONNECTIONS" "$BASE$path" "$@"
    # Each reference once a run (measured beside the first shop that reads it).
    grep -q "\"name\": \"ref-$body\"" "$RESULTS" && return 0
    run_wrk "ref-$body" reference "{\"label\": \"bare axum, the same $(stat -c %s "$BODIES/$body") bytes\"}" \
        "$CONNECTIONS" "http://127.0.0.1:$REF_PORT/$body"
}

# Checkout: POST /orders with items (JSON), an Idempotency-Key each, 16
# connections, one customer per scenario; then the oversell check of that
# customer's orders against the stock of that scenario's products.
checkout_lua() {
    local products=$1
    cat <<EOF
local products = {$products}
local counter = 0
id = 0 -- set by setup() for each thread
function setup(thread)
    thread:set("id", math.random(1, 1000000000))
end
function init(args)
    math.randomseed(id)
end
function request()
    counter = counter + 1
    local product = products[math.random(1, #products)]
    -- wrk.headers holds -H's headers (the customer's cookie) too.
    wrk.headers["Content-Type"] = "application/json"
    wrk.headers["Accept"] = "application/json"
    wrk.headers["Origin"] = "$BASE"
    wrk.headers["Idempotency-Key"] = string.format("bench-$$-$MODE-%d-%d", id, counter)
    return wrk.format("POST", "/orders", nil, string.format('{"items":[{"product_id":%d,"quantity":1}]}', product))
end
EOF
}
checkout() {
    local name=$PREFIX$1 label=$2 customer=$3 products=$4 reference=$5
    echo "  $label" >&2
    checkout_lua "$products" >"$WORK/$name.lua"
    run_wrk "$name" checkout "{\"label\": \"$label\", \"unit\": \"orders/s\", \"reference\": \"$reference\"}" 16 \
        "$BASE/orders" -s "$WORK/$name.lua" -H "Cookie: $(cat "$WORK/cookie-$customer")"
    # The stock of every product of the run against this customer's confirmed orders.
    setup stocks "$customer" >"$WORK/stocks.json"
    local check
    check=$(python3 "$HELP" oversell "$BASE" "$WORK/cookie-$customer" "$WORK/stocks.json")
    python3 -c 'import json,sys; rows=[json.loads(l) for l in open(sys.argv[1])]; rows[-1]["check"]=json.loads(sys.argv[2]); open(sys.argv[1],"w").write("".join(json.dumps(r)+"\n" for r in rows))' \
        "$RESULTS" "$check"
    python3 -c 'import json,sys; c=json.loads(sys.argv[1]); sys.exit(0 if c["ok"] else 1)' "$check" ||
        fail "$name: the oversell check failed: $check"
}
# setup KEY...: a value of setup.json (numbers and strings as they are, the rest as JSON).
setup() {
    python3 -c 'import json,sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2:]: v = v[k]
print(v if isinstance(v, (int, str)) else json.dumps(v))' "$WORK/setup.json" "$@"
}

# ------------------------------------------------------------------ the shop
# measure_shop MODE: starts `shop all` (the settings are in the environment
# already), makes the catalogue and customers, and runs every scenario;
# names are prefixed with "pg-" on PostgreSQL.
measure_shop() {
    MODE=$1
    PREFIX=$([[ $MODE == embedded ]] || echo "pg-")
    local http
    http=$(free_port)
    export SHOP_DATA_DIR="$WORK/data-$MODE" SHOP_HTTP_ADDR="127.0.0.1:$http" SHOP_METRICS_ADDR="127.0.0.1:$(free_port)" \
        SHOP_USERS_ADDR="127.0.0.1:$(free_port)" SHOP_INVENTORY_ADDR="127.0.0.1:$(free_port)" \
        SHOP_ORDERS_ADDR="127.0.0.1:$(free_port)" \
        SHOP_SIGNIN_LIMIT_PER_ADDRESS=1000000 SHOP_SIGNIN_LIMIT_PER_ACCOUNT=1000000
    BASE="http://127.0.0.1:$http"
    local started ready_ms=""
    started=$(now_ms)
    "$BIN" all >"$WORK/shop-$MODE.log" 2>&1 &
    SHOP_PID=$!
    for _ in $(seq 3000); do
        if curl -fsS -o /dev/null "$BASE/healthz" 2>/dev/null; then ready_ms=$(($(now_ms) - started)); break; fi
        kill -0 "$SHOP_PID" 2>/dev/null || { tail -n 30 "$WORK/shop-$MODE.log" >&2; fail "the $MODE shop exited while starting"; }
        sleep 0.01
    done
    [[ -n "$ready_ms" ]] || fail "the $MODE shop did not answer /healthz within 30 s"
    sleep 1
    local rss_idle
    rss_idle=$(rss_kib "$SHOP_PID" VmRSS)

    # The catalogue (PRODUCTS products and a hot one), made by an admin, and the customers.
    curl -fsS -o /dev/null -H 'Accept: application/json' -H 'Content-Type: application/json' -H "Origin: $BASE" \
        -X POST "$BASE/users/register" -d '{"name":"Bench","email":"bench@example.com","password":"correct horse battery"}'
    "$BIN" make-admin bench@example.com >/dev/null
    local setup_started
    setup_started=$(now_ms)
    python3 "$HELP" setup "$BASE" "$WORK" "$PRODUCTS"
    PRODUCT=$(setup product)
    setup cookies cart >"$WORK/cookie-cart"
    setup cookies hot >"$WORK/cookie-hot"
    setup cookies random >"$WORK/cookie-random"
    echo "$MODE: ready in $ready_ms ms; catalogue of $PRODUCTS products and customers made in $(($(now_ms) - setup_started)) ms" >&2

    local cart_cookie
    cart_cookie="Cookie: $(cat "$WORK/cookie-cart")"
    if [[ -z "$REF_PID" ]] && wanted reads; then
        # The reference serves exactly what the first shop measured answers to each read.
        capture() { local file=$1; shift; curl -fsS -o "$BODIES/$file" "$@"; }
        capture product.json -H 'Accept: application/json' "$BASE/products/$PRODUCT"
        capture product.html "$BASE/products/$PRODUCT"
        capture list.html "$BASE/products"
        capture partial.html -H 'HX-Request: true' "$BASE/products"
        capture list.json -H 'Accept: application/json' "$BASE/products"
        capture cart.html -H "$cart_cookie" "$BASE/cart"
        start_reference
    fi

    echo "measuring the $MODE shop, ${DURATION} s per scenario:" >&2
    if wanted reads; then
    read_pair product-json "cached \`GET /products/{id}\` JSON" product.json "/products/$PRODUCT" -H 'Accept: application/json'
    read_pair product-html "\`GET /products/{id}\` HTML page" product.html "/products/$PRODUCT"
    read_pair list-html "\`GET /products\` HTML, page of 20" list.html "/products"
    read_pair list-partial "\`GET /products\` htmx partial" partial.html "/products" -H 'HX-Request: true'
    read_pair list-json "\`GET /products\` JSON, page of 20" list.json "/products" -H 'Accept: application/json'
    read_pair cart-html "\`GET /cart\` HTML, 3 lines, signed in" cart.html "/cart" -H "$cart_cookie"
    fi

    # Cached JSON at half the rate it reached, then at 1,000/s alone: the
    # baseline for the same reads during sign-in.
    local full half
    if wanted reads; then
    full=$(python3 -c 'import json,sys; print(int([json.loads(l) for l in open(sys.argv[1]) if json.loads(l)["name"]==sys.argv[2]][0]["rate"]))' \
        "$RESULTS" "${PREFIX}product-json")
    half=$(( full / 2 ))
    echo "  cached product JSON paced at $half/s, then at 1,000/s" >&2
    paced "${PREFIX}paced-half" "cached product JSON paced at half its rate (c$CONNECTIONS)" "$half" "$CONNECTIONS"
    fi
    if wanted reads || wanted signin; then
        paced "${PREFIX}paced-1000" "cached product JSON paced at 1,000/s, alone (c16)" 1000 16
    fi
    if wanted signin; then

    # Sign-in: POST /users/login (JSON), limits raised, with the paced reads
    # running beside it; the reference is raw argon2id on every core.
    echo "  sign-in, with cached reads at 1,000/s beside it" >&2
    cat >"$WORK/signin.lua" <<EOF
wrk.method = "POST"
wrk.body = '{"email":"signin@example.com","password":"correct horse battery"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"
wrk.headers["Origin"] = "$BASE"
EOF
    local reads_pid
    # Its own results file: two processes appending to one can interleave.
    RESULTS="$WORK/beside-signin.jsonl" paced "${PREFIX}paced-1000-signin" \
        "cached product JSON paced at 1,000/s during sign-in (c16)" 1000 16 &
    reads_pid=$!
    run_wrk "${PREFIX}signin" signin '{"label": "sign-in `POST /users/login` (c16)", "unit": "sign-ins/s", "reference": "argon2"}' \
        16 "$BASE/users/login" -s "$WORK/signin.lua"
    wait "$reads_pid" || fail "the reads beside sign-in failed"
    cat "$WORK/beside-signin.jsonl" >>"$RESULTS"
    rm -f "$WORK/beside-signin.jsonl"
    fi

    if wanted checkout; then
    if [[ -n "$PREFIX" ]]; then
        # pgbench first, on the same server, with the shop idle.
        run_pgbench
    fi
    local reference
    reference=$([[ -n "$PREFIX" ]] && echo pgbench || echo "")
    checkout checkout-hot "checkout \`POST /orders\`, one hot product (c16)" hot "$(setup hot)" "$reference"
    checkout checkout-random "checkout \`POST /orders\`, random of $PRODUCTS products (c16)" random \
        "$(setup catalogue | tr -d '[] ')" "$reference"
    fi

    local rss_after rss_peak
    rss_after=$(rss_kib "$SHOP_PID" VmRSS)
    rss_peak=$(rss_kib "$SHOP_PID" VmHWM)
    stop_shop
    python3 -c 'import json,sys; print(json.dumps({"mode": sys.argv[1], "ready_ms": int(sys.argv[2]), "rss_idle_kib": int(sys.argv[3]), "rss_after_kib": int(sys.argv[4]), "rss_peak_kib": int(sys.argv[5])}))' \
        "$MODE" "$ready_ms" "$rss_idle" "$rss_after" "$rss_peak" >>"$WORK/modes.jsonl"
}

# pgbench TPC-B, the checkout reference, in a database of its own, dropped after.
run_pgbench() {
    echo "  pgbench TPC-B" >&2
    PG_DB="shop_bench_pgbench_$$_$RANDOM"
    psql "$PG_URL/postgres" -XAtqw -c "CREATE DATABASE $PG_DB" >/dev/null
    pgbench -i -s 10 -q "$PG_URL/$PG_DB" >"$WORK/pgbench-init.txt" 2>&1 ||
        { cat "$WORK/pgbench-init.txt" >&2; fail "pgbench -i failed"; }
    (cd "$WORK" && pgbench -c 16 -j "$THREADS" -T "$DURATION" -l --log-prefix="$WORK/pgbench-log" "$PG_URL/$PG_DB") \
        >"$WORK/pgbench.txt" 2>&1 || { cat "$WORK/pgbench.txt" >&2; fail "pgbench failed"; }
    python3 "$HELP" pgbench pgbench "$WORK/pgbench-log" "$WORK/pgbench.txt" \
        '{"label": "pgbench TPC-B (scale 10, c16)", "unit": "TPS"}' >>"$RESULTS"
    psql "$PG_URL/postgres" -XAtqw -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null
    PG_DB=""
}

: >"$WORK/modes.jsonl"
MODE="" PREFIX="" BASE="" PRODUCT=""
ARGON2=""
if [[ ,$MODES, == *,embedded,* ]]; then
    measure_shop embedded
fi
if wanted signin; then
ARGON2=$("$REF" argon2 "$DURATION" "$(nproc)")
python3 -c 'import json,sys; rate=float(sys.argv[1].split()[0]); print(json.dumps({"name": "argon2", "kind": "argon2", "rate": rate, "unit": "hashes/s", "p50_ms": None, "p99_ms": None, "label": "raw argon2id (m=19 MiB, t=2, p=1), " + sys.argv[2] + " threads", "detail": sys.argv[1]}))' \
    "$ARGON2" "$(nproc)" >>"$RESULTS"
fi

# The same on PostgreSQL + Redis + NATS, when all three answer.
PG_NOTE=""
if [[ ,$MODES, != *,postgres,* ]]; then
    PG_NOTE="not run (BENCH_MODES=$MODES)"
elif [[ "$PG_URL" == none ]]; then
    PG_NOTE="not run (SHOP_BENCH_POSTGRES_URL=none)"
elif ! command -v pgbench >/dev/null || ! command -v psql >/dev/null; then
    PG_NOTE="not run: no pgbench/psql here (apt-get install postgresql-client)"
elif ! PGCONNECT_TIMEOUT=3 psql "$PG_URL/postgres" -XAtqw -c 'select 1' >/dev/null 2>&1; then
    PG_NOTE="not run: no PostgreSQL answered at $PG_URL"
elif ! python3 "$HELP" ping "$REDIS_URL" "$NATS_URL"; then
    PG_NOTE="not run: Redis ($REDIS_URL) or NATS ($NATS_URL) did not answer"
else
    SHARED_USED=1
    export SHOP_POSTGRES_URL="$PG_URL" POSTGRES_DB_USERS="${SHARED_NAME}_users" \
        POSTGRES_DB_INVENTORY="${SHARED_NAME}_inventory" POSTGRES_DB_ORDERS="${SHARED_NAME}_orders" \
        SHOP_REDIS_URL="$REDIS_URL" SHOP_CACHE_PREFIX="$SHARED_NAME:" \
        SHOP_NATS_URL="$NATS_URL" SHOP_NATS_STREAM="${SHARED_NAME^^}_EVENTS" SHOP_NATS_SUBJECT_PREFIX="$SHARED_NAME"
    measure_shop postgres
    forget_shared
fi
[[ -z "$PG_NOTE" ]] || echo "PostgreSQL + Redis + NATS: $PG_NOTE" >&2

mkdir -p "$(dirname "$BENCH_OUT")"
python3 - "$WORK/meta.json" <<EOF
import json, sys
json.dump({
    "build": "$BUILD", "seconds": $DURATION, "short": bool("$SHORT"), "connections": $CONNECTIONS,
    "wrk_threads": $THREADS, "products": $PRODUCTS, "nproc": $(nproc),
    "cpu": "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)",
    "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "commit": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)",
    "argon2": "$ARGON2", "postgres_note": "$PG_NOTE" or None,
    "modes": [json.loads(line) for line in open("$WORK/modes.jsonl") if line.strip()],
}, open(sys.argv[1], "w"))
EOF
python3 "$HELP" report "$RESULTS" "$WORK/meta.json" "$BENCH_OUT"
echo
echo "written: $BENCH_OUT"
