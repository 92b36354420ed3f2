#!/usr/bin/env bash
# What a page of ListOrders costs with a million orders (issue 14, point 4).
#
#   bench/scale_orders.sh [N]        (default 1000000)
#
# A fresh PostgreSQL database migrated by the shop itself (`shop migrate
# orders`), then N orders inserted by SQL (generate_series) into the real
# tables as the service leaves them: a delivery address and method, VAT,
# payment method and state, tracking references, one to three priced lines
# each (order_items), and their status history (order_status_changes).
# Every tenth order is one big customer's (user 10001: N/10 orders); the
# others are spread over customers 1..10000; one in 32 is a refused checkout
# (rejected), one in 16 cancelled, none pending (so the recovery pass has
# nothing to do). VACUUM ANALYZE, as autovacuum would have by then.
#
# Then an orders service (`shop orders`) runs on it, and each list below is
# asked for by bench's small gRPC client (backend/orders/examples/
# list_orders.rs), signed as an admin or as the customer. The figure is the
# service's own time for the ListOrders call (the growth of its
# grpc_server_handling_seconds_sum across the call: server time), median of
# SAMPLES, in ms; `client` is the caller's round trip, same median. Last,
# EXPLAIN ANALYZE of the statements a middle page runs, and of the OFFSET
# and COUNT(*) the list ran before, for comparison.
#
# Environment: SHOP_BIN (default target/release/shop, else
# target/perf/release/shop, else target/debug/shop), LIST_ORDERS_BIN
# (default: built by cargo), PG_URL (default postgres://postgres@127.0.0.1:5432),
# SAMPLES (default 7), KEEP=1 keeps the database. Needs psql and curl.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-1000000}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
SAMPLES=${SAMPLES:-7}
SHOP_BIN=${SHOP_BIN:-}
for candidate in target/release/shop target/perf/release/shop target/debug/shop; do
    if [ -z "$SHOP_BIN" ] && [ -x "$candidate" ]; then SHOP_BIN=$candidate; fi
done
if [ -z "${LIST_ORDERS_BIN:-}" ]; then
    cargo build -q -p shop-orders --example list_orders
    LIST_ORDERS_BIN=target/debug/examples/list_orders
fi
DB=bench_orders_$N
BIG=10001
PORT=18480
export SHOP_INTERNAL_SECRET="scale-orders-bench-secret-0123456789"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
    [ -n "${KEEP:-}" ] || psql -X -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $DB" 2>/dev/null || true
}
trap cleanup EXIT

psql_db() { psql -X -q -v ON_ERROR_STOP=1 "$PG_URL/$DB" "$@"; }

populate() {
    psql_db <<SQL
INSERT INTO delivery_methods (name, price_minor, free_above_minor, active, created_at_ms, updated_at_ms)
VALUES ('Standard', 490, 5000, 1, 0, 0);

-- Order i gets id i (a fresh identity), so its lines can be computed here
-- and again below: line l of order i is product 1 + (31 i + 17 l) % 1000,
-- quantity 1 + l % 2, priced 4.50 + (product % 50) euros.
INSERT INTO orders (user_id, status, stock_state, total_minor, subtotal_minor, created_at_ms, updated_at_ms,
                    delivery_name, delivery_line1, delivery_line2, delivery_postcode, delivery_city,
                    delivery_country, delivery_phone, delivery_method_id, delivery_method_name,
                    delivery_price_minor, delivery_free_above_minor, delivery_minor, vat_rate_bp,
                    payment_method, payment_state, from_cart, rejection, tracking_reference)
SELECT CASE WHEN i % 10 = 0 THEN $BIG ELSE 1 + (i * 7919) % 10000 END,
       s.status,
       CASE WHEN s.status IN ('rejected', 'cancelled') THEN 'released' ELSE 'reserved' END,
       CASE WHEN s.status = 'rejected' THEN 0 ELSE t.subtotal + CASE WHEN t.subtotal >= 5000 THEN 0 ELSE 490 END END,
       CASE WHEN s.status = 'rejected' THEN 0 ELSE t.subtotal END,
       1700000000000 + i * 1000, 1700000000000 + i * 1000 + 500,
       'Customer ' || i, i || ' rue de la Paix', '', '75002', 'Paris', 'FR', '+33 1 23 45 67 89',
       1, 'Standard', 490, 5000,
       CASE WHEN s.status = 'rejected' OR t.subtotal >= 5000 THEN 0 ELSE 490 END,
       2000,
       CASE WHEN i % 2 = 0 THEN 'bank_transfer' ELSE 'cash_on_delivery' END,
       CASE WHEN s.status = 'delivered' OR (s.status = 'shipped' AND i % 2 = 0) THEN 'paid' ELSE 'unpaid' END,
       1,
       CASE WHEN s.status = 'rejected' THEN 'stock_short' END,
       CASE WHEN s.status IN ('shipped', 'delivered') THEN 'TRK' || i END
FROM generate_series(1::bigint, $N) AS i,
     LATERAL (SELECT CASE WHEN i % 32 = 7 THEN 'rejected'
                          WHEN i % 16 = 3 THEN 'cancelled'
                          WHEN i > $N - $N / 50 THEN 'confirmed'
                          WHEN i % 3 = 0 THEN 'shipped'
                          ELSE 'delivered' END AS status) AS s,
     LATERAL (SELECT SUM((1 + l % 2) * (450 + ((1 + (31 * i + 17 * l) % 1000) % 50) * 100))::bigint AS subtotal
              FROM generate_series(1, 1 + i % 3) AS l) AS t
ORDER BY i;

INSERT INTO order_items (order_id, product_id, quantity, product_name, unit_price_minor)
SELECT o.id, 1 + (31 * o.id + 17 * l) % 1000, 1 + l % 2,
       CASE WHEN o.status <> 'rejected' THEN 'Product ' || (1 + (31 * o.id + 17 * l) % 1000) END,
       CASE WHEN o.status <> 'rejected' THEN 450 + ((1 + (31 * o.id + 17 * l) % 1000) % 50) * 100 END
FROM orders o, generate_series(1, 1 + o.id % 3) AS l;

INSERT INTO order_status_changes (order_id, status, actor, at_ms)
SELECT o.id, h.status, CASE WHEN h.n = 1 OR h.status = 'cancelled' THEN 'user:' || o.user_id
                            WHEN h.status IN ('confirmed', 'rejected') THEN 'service:orders'
                            ELSE 'user:1' END,
       o.created_at_ms + h.n * 100
FROM orders o,
     LATERAL unnest(CASE o.status WHEN 'rejected' THEN ARRAY['pending', 'rejected']
                                  WHEN 'confirmed' THEN ARRAY['pending', 'confirmed']
                                  WHEN 'cancelled' THEN ARRAY['pending', 'confirmed', 'cancelled']
                                  WHEN 'shipped' THEN ARRAY['pending', 'confirmed', 'shipped']
                                  ELSE ARRAY['pending', 'confirmed', 'shipped', 'delivered'] END)
         WITH ORDINALITY AS h(status, n);
SQL
    psql_db -c "VACUUM ANALYZE"
    local check
    check=$(psql_db -At -c "SELECT min(id) = 1 AND max(id) = $N AND count(*) = $N
        AND bool_and(created_at_ms = 1700000000000 + id * 1000) FROM orders")
    [ "$check" = t ] || { echo "orders were not numbered 1..$N" >&2; exit 1; }
}

median() { sort -n | awk '{ a[NR] = $1 } END { printf "%.2f", a[int((NR + 1) / 2)] }'; }

# Seconds the service has spent answering ListOrders so far.
list_seconds() {
    curl -s "$METRICS/metrics" | awk '/^grpc_server_handling_seconds_sum/ && /ListOrders/ { sum += $NF } END { printf "%.9f", sum }'
}

# One call: "<server ms> <client ms> <orders> <total> <next> <previous>".
call() {
    local before after line
    before=$(list_seconds)
    line=$("$LIST_ORDERS_BIN" "$URL" "$@")
    after=$(list_seconds)
    awk -v a="$after" -v b="$before" -v line="$line" 'BEGIN { printf "%.3f %s\n", (a - b) * 1000, line }'
}

# A table row: the list, the page, server and client medians, what came back.
measure() {
    local label=$1 page=$2
    shift 2
    call "$@" >/dev/null # a warm-up: the pool's connection prepares its statements once
    for _ in $(seq 1 "$SAMPLES"); do call "$@"; done >"$WORK/calls"
    local server client shown
    server=$(cut -d' ' -f1 "$WORK/calls" | median)
    client=$(cut -d' ' -f2 "$WORK/calls" | median)
    shown=$(tail -1 "$WORK/calls" | awk '{ printf "%s orders of %s", $3, $4 }')
    printf '| %-38s | %-18s | %6s | %6s | %-19s |\n' "$label" "$page" "$server" "$client" "$shown"
}

psql -X -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
ENV=(SHOP_POSTGRES_URL="$PG_URL" POSTGRES_DB_ORDERS="$DB" SHOP_DATA_DIR="$WORK/data" SHOP_LOG_FORMAT=json RUST_LOG=warn)
env "${ENV[@]}" "$SHOP_BIN" migrate orders >/dev/null
started=$SECONDS
populate
echo "# $N orders (with $(psql_db -At -c 'SELECT count(*) FROM order_items') lines and" \
    "$(psql_db -At -c 'SELECT count(*) FROM order_status_changes') status changes) inserted and analysed in" \
    "$((SECONDS - started)) s; database $(psql_db -At -c "SELECT pg_size_pretty(pg_database_size('$DB'))")" >&2

# Inventory is never called by a list: its URL leads nowhere.
env "${ENV[@]}" SHOP_ORDERS_ADDR="127.0.0.1:$PORT" SHOP_METRICS_ADDR="127.0.0.1:$((PORT + 1))" \
    SHOP_INVENTORY_URL="http://127.0.0.1:9" "$SHOP_BIN" orders >"$WORK/orders.log" 2>&1 &
PIDS+=($!)
URL="http://127.0.0.1:$PORT"
METRICS="http://127.0.0.1:$((PORT + 1))"
for _ in $(seq 1 100); do
    "$LIST_ORDERS_BIN" "$URL" admin - first 1 >/dev/null 2>&1 && break
    sleep 0.2
done

# Cursors in the middle of each list, as the service writes them ("i<id>").
mid_all="i$((N / 2 + 1))"
mid_big=$(psql_db -At -c "SELECT 'i' || id FROM orders WHERE user_id = $BIG AND status <> 'rejected'
    ORDER BY id DESC OFFSET $((N / 20)) LIMIT 1")
mid_big_all=$(psql_db -At -c "SELECT 'i' || id FROM orders WHERE user_id = $BIG ORDER BY id DESC OFFSET $((N / 20)) LIMIT 1")
small=42
small_count=$(psql_db -At -c "SELECT count(*) FROM orders WHERE user_id = $small AND status <> 'rejected'")

echo
echo "ListOrders on PostgreSQL, $N orders, page size 20: server time (the service's own), median of $SAMPLES, ms; $SHOP_BIN"
printf '| %-38s | %-18s | %6s | %6s | %-19s |\n' list page server client answer
echo "|----------------------------------------|--------------------|--------|--------|---------------------|"
measure "admin, every order" "first" admin - first 20
measure "admin, every order" "middle (after)" admin - "after:$mid_all" 20
measure "admin, every order" "middle (before)" admin - "before:$mid_all" 20
measure "admin, every order" "last" admin - last 20
measure "admin, every order" "old link page=500" admin - page:500 20
measure "admin, customer $BIG's orders" "first" admin "$BIG" first 20
measure "admin, customer $BIG's orders" "middle (after)" admin "$BIG" "after:$mid_big_all" 20
measure "admin, customer $BIG's orders" "last" admin "$BIG" last 20
measure "customer $BIG ($((N / 10)) orders), own" "first" "user:$BIG" "$BIG" first 20
measure "customer $BIG, own" "middle (after)" "user:$BIG" "$BIG" "after:$mid_big" 20
measure "customer $BIG, own" "middle (before)" "user:$BIG" "$BIG" "before:$mid_big" 20
measure "customer $BIG, own" "last" "user:$BIG" "$BIG" last 20
measure "customer $small ($small_count orders), own" "first" "user:$small" "$small" first 20
measure "customer $small, own" "last" "user:$small" "$small" last 20

# The plans behind those figures: index used and execution time of each
# statement of a middle page (the columns the service selects), and of the
# OFFSET and full COUNT(*) the list ran before this change.
COLUMNS="id, user_id, status, total_minor, subtotal_minor, created_at_ms, updated_at_ms, delivery_name,
    delivery_line1, delivery_line2, delivery_postcode, delivery_city, delivery_country, delivery_phone,
    delivery_method_id, delivery_method_name, delivery_minor, vat_rate_bp, payment_method, payment_state,
    tracking_reference"
mid_big_id=${mid_big#i}
explain() {
    local label=$1 sql=$2
    # The second run is timed: cached pages, as the service's own calls find them.
    psql_db -At -c "EXPLAIN (ANALYZE, BUFFERS) $sql" >/dev/null
    psql_db -At -c "EXPLAIN (ANALYZE, BUFFERS) $sql" >"$WORK/plan"
    local scan time
    scan=$(grep -m1 -oE '(Index Only Scan|Index Scan|Seq Scan|Bitmap Heap Scan)( Backward)?( using [a-z_]+)?( on [a-z_]+)?' "$WORK/plan" || true)
    time=$(grep -oE 'Execution Time: [0-9.]+ ms' "$WORK/plan" | grep -oE '[0-9.]+')
    printf '| %-56s | %-66s | %6s |\n' "$label" "$scan" "$time"
}
echo
echo "EXPLAIN (ANALYZE, BUFFERS), the second of two runs (warm cache), ms"
printf '| %-56s | %-66s | %6s |\n' statement plan time
echo "|----------------------------------------------------------|--------------------------------------------------------------------|--------|"
explain "admin middle page: id < \$c ORDER BY id DESC LIMIT 21" \
    "SELECT $COLUMNS FROM orders WHERE id < ${mid_all#i} ORDER BY id DESC LIMIT 21"
explain "admin page before it: id > \$c ORDER BY id LIMIT 21" \
    "SELECT $COLUMNS FROM orders WHERE id > ${mid_all#i} ORDER BY id LIMIT 21"
explain "admin last page: ORDER BY id LIMIT 21" "SELECT $COLUMNS FROM orders ORDER BY id LIMIT 21"
explain "admin neighbour probe: id > \$c ORDER BY id LIMIT 1" \
    "SELECT id FROM orders WHERE id > ${mid_all#i} ORDER BY id LIMIT 1"
explain "admin count: COUNT(*) of (... LIMIT 1001)" \
    "SELECT COUNT(*) FROM (SELECT 1 FROM orders ORDER BY id DESC LIMIT 1001) AS bounded"
explain "admin, one customer: user_id, id < \$c, LIMIT 21" \
    "SELECT $COLUMNS FROM orders WHERE user_id = $BIG AND id < ${mid_big_all#i} ORDER BY id DESC LIMIT 21"
explain "customer middle page: user_id, not rejected, id < \$c" \
    "SELECT $COLUMNS FROM orders WHERE user_id = $BIG AND status <> 'rejected' AND id < $mid_big_id ORDER BY id DESC LIMIT 21"
explain "customer last page: user_id, not rejected, ORDER BY id" \
    "SELECT $COLUMNS FROM orders WHERE user_id = $BIG AND status <> 'rejected' ORDER BY id LIMIT 21"
explain "customer $small middle page (few orders, spread out)" \
    "SELECT $COLUMNS FROM orders WHERE user_id = $small AND status <> 'rejected' AND id < ${mid_all#i} ORDER BY id DESC LIMIT 21"
explain "customer $small last page" \
    "SELECT $COLUMNS FROM orders WHERE user_id = $small AND status <> 'rejected' ORDER BY id LIMIT 21"
explain "customer count: COUNT(*) of (... LIMIT 1001)" \
    "SELECT COUNT(*) FROM (SELECT 1 FROM orders WHERE user_id = $BIG AND status <> 'rejected' ORDER BY id DESC LIMIT 1001) AS bounded"
page_ids=$(psql_db -At -c "SELECT string_agg(id::text, ', ') FROM
    (SELECT id FROM orders WHERE user_id = $BIG AND status <> 'rejected' AND id < $mid_big_id ORDER BY id DESC LIMIT 20) AS page")
explain "a page's items: order_id IN (its 20 ids)" \
    "SELECT order_id, product_id, quantity, product_name, unit_price_minor FROM order_items
     WHERE order_id IN ($page_ids) ORDER BY order_id, product_id"
explain "before: admin middle page by OFFSET $((N / 2))" \
    "SELECT id FROM orders ORDER BY id DESC LIMIT 20 OFFSET $((N / 2))"
explain "before: customer middle page by OFFSET $((N / 20))" \
    "SELECT id FROM orders WHERE user_id = $BIG AND status <> 'rejected' ORDER BY id DESC LIMIT 20 OFFSET $((N / 20))"
explain "old link page=500: skip 9,980 in the index only" "SELECT id FROM orders ORDER BY id DESC LIMIT 1 OFFSET 9980"
explain "before: admin COUNT(*) of every order" "SELECT COUNT(*) FROM orders"
explain "before: customer COUNT(*) of their orders" \
    "SELECT COUNT(*) FROM orders WHERE user_id = $BIG AND status <> 'rejected'"
