#!/usr/bin/env bash
# What checkout's SQL costs PostgreSQL on its own: one order's statements
# replayed by pgbench (16 clients, prepared statements, no shop, no NATS),
# beside pgbench TPC-B on the same server in the same run (the checkout
# reference of ops/bench.sh). Two forms of the same writes and commits:
#
#   as issued       bench/checkout_floor/as_issued.sql: the shop's statements
#                   today, 19 round trips and 3 commits an order;
#   one statement   bench/checkout_floor/one_statement.sql: each of the three
#                   transactions as one statement, 3 round trips, 3 commits.
#
# Each on a catalogue of 1,000 products (random) and on one product (hot),
# then checked: every order confirmed, one reservation line each, and the
# stock taken equal to the orders made. Prints a Markdown table; speed never
# fails the run, a wrong count does.
#
#   bench/checkout_floor.sh [SECONDS] [--short]   (default 10 s; --short: 2 s, for CI)
#   SHOP_BENCH_POSTGRES_URL   (default postgres://postgres@127.0.0.1:5432)
# Needs pgbench and psql (postgresql-client). Its databases are removed at the end.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

SECONDS_EACH=10
for arg in "$@"; do
    case $arg in
        --short) SECONDS_EACH=2 ;;
        *[!0-9]* | "") echo "usage: bench/checkout_floor.sh [SECONDS] [--short]" >&2; exit 2 ;;
        *) SECONDS_EACH=$arg ;;
    esac
done
PG_URL=${SHOP_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
PRODUCTS=1000
STOCK=100000000
for tool in pgbench psql; do
    command -v "$tool" >/dev/null || { echo "bench/checkout_floor.sh needs $tool (apt-get install postgresql-client)" >&2; exit 1; }
done

NAME="shop_floor_$$_$RANDOM"
FLOOR_DB="${NAME}_checkout" TPCB_DB="${NAME}_tpcb"
WORK=$(mktemp -d)
cleanup() {
    for db in "$FLOOR_DB" "$TPCB_DB"; do
        psql "$PG_URL/postgres" -XAtqw -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
sql() { psql "$PG_URL/$FLOOR_DB" -XAtqw -v ON_ERROR_STOP=1 "$@"; }

# The orders and inventory schemas from the migrations, side by side.
psql "$PG_URL/postgres" -XAtqw -c "CREATE DATABASE $FLOOR_DB" -c "CREATE DATABASE $TPCB_DB" >/dev/null
sql -c "CREATE SCHEMA ord" -c "CREATE SCHEMA inv" -c "CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public"
for service in orders inventory; do
    schema=$([[ $service == orders ]] && echo ord || echo inv)
    for migration in "$ROOT"/migrations/"$service"/postgres/*.sql; do
        { echo "SET search_path = $schema, public;"; grep -v "CREATE EXTENSION" "$migration"; } | sql >/dev/null
    done
done
# Inventory's triggers name their tables unqualified.
sql -c "ALTER DATABASE $FLOOR_DB SET search_path = inv, public"
sql -c "INSERT INTO inv.products (name, price_minor, stock, created_at_ms, updated_at_ms)
        SELECT 'Product ' || g, 1000 + g, $STOCK, 0, 0 FROM generate_series(1, $PRODUCTS) AS g"
sql -c "VACUUM ANALYZE"
pgbench -i -s 10 -q "$PG_URL/$TPCB_DB" >"$WORK/init.txt" 2>&1 || { cat "$WORK/init.txt" >&2; exit 1; }

# run NAME [pgbench options]: prints TPS; any failed transaction ends the run.
run() {
    local name=$1
    shift
    pgbench -n -c 16 -j 2 -T "$SECONDS_EACH" "$@" >"$WORK/$name.txt" 2>&1 || { cat "$WORK/$name.txt" >&2; exit 1; }
    grep -q "number of failed transactions: 0 " "$WORK/$name.txt" || { cat "$WORK/$name.txt" >&2; exit 1; }
    sed -n 's/^tps = \([0-9]*\).*/\1/p' "$WORK/$name.txt"
}
# check: what the orders made must match what inventory took.
check() {
    local counts
    counts=$(sql -c "SELECT (SELECT COUNT(*) FROM ord.orders),
                            (SELECT COUNT(*) FROM ord.orders WHERE status = 'confirmed'),
                            (SELECT COUNT(*) FROM inv.reservation_items),
                            (SELECT $STOCK::bigint * $PRODUCTS - SUM(stock) FROM inv.products)")
    IFS='|' read -r made confirmed reserved taken <<<"$counts"
    if [[ -z $made || $made == 0 || $made != "$confirmed" || $made != "$reserved" || $made != "$taken" ]]; then
        echo "checkout_floor: orders $made, confirmed $confirmed, reserved $reserved, stock taken $taken" >&2
        exit 1
    fi
    echo "$made"
}

echo "  pgbench TPC-B (scale 10, c16)" >&2
tpcb=$(run tpcb "$PG_URL/$TPCB_DB")
rows=()
for form in as_issued one_statement; do
    for products in "$PRODUCTS" 1; do
        label="$([[ $form == as_issued ]] && echo "as issued (19 round trips)" || echo "one statement a transaction (3 round trips)"), $([[ $products == 1 ]] && echo "one hot product" || echo "random of $PRODUCTS")"
        echo "  $label" >&2
        tps=$(run "$form-$products" -M prepared -D products="$products" -f "bench/checkout_floor/$form.sql" "$PG_URL/$FLOOR_DB")
        rows+=("| $label | $tps | $(python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$tps" "$tpcb") |")
    done
done
orders=$(check)

echo
echo "checkout's SQL replayed by pgbench (c16, ${SECONDS_EACH} s each, $orders orders made and checked), against pgbench TPC-B: $tpcb TPS"
echo
echo "| one order's SQL | orders/s | of TPC-B |"
echo "|---|---|---|"
printf '%s\n' "${rows[@]}"
