#!/usr/bin/env bash
# How ListProducts' cost grows with the catalogue (issue 14, point 4).
#
#   bench/scale_products.sh [N ...]        (default: 1000 100000 1000000)
#
# For each N: a fresh PostgreSQL database migrated by the shop itself
# (`shop migrate inventory`), N products inserted by one SQL statement
# (generate_series) into the real tables, so the search vector (a generated
# column), the words table (its triggers) and every index are filled exactly
# as the service fills them; ten categories, one per product. Then an
# inventory service and a gateway are started on it, and each list below is
# fetched as JSON through the gateway: first, middle and last page of every
# sort, with a category filter, and searches. Every fetch is a URL the
# gateway has not cached (page_size varies: 20, 21, 22, ...). The figure is
# the inventory service's own time for the ListProducts call (the growth of
# its grpc_server_handling_seconds_sum across the fetch: server time, without
# the gateway and the debug build's rendering), median of SAMPLES, in ms.
#
# Environment: SHOP_BIN (default target/release/shop, else target/debug/shop),
# PG_URL (default postgres://postgres@127.0.0.1:5432), SAMPLES (default 5),
# KEEP=1 keeps the databases; REUSE=1 measures a kept database again when it
# holds N products (migrated to the current schema first, then analysed)
# instead of building it anew. Needs psql and curl.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(1000 100000 1000000)
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
SAMPLES=${SAMPLES:-5}
SHOP_BIN=${SHOP_BIN:-}
if [ -z "$SHOP_BIN" ]; then
    if [ -x target/release/shop ]; then SHOP_BIN=target/release/shop; else SHOP_BIN=target/debug/shop; fi
fi
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

psql_db() { psql -X -q -v ON_ERROR_STOP=1 "$PG_URL/$1" "${@:2}"; }

# The same words the service's own products would have: names and
# descriptions built from a few lists, so some words are in every product
# ("tea" begins most names), some in one in thirteen ("darjeeling").
populate() {
    local db=$1 n=$2
    psql_db "$db" <<SQL
INSERT INTO categories (name, slug, created_at_ms)
SELECT 'Category ' || c, 'category-' || c, 0 FROM generate_series(1, 10) AS c;

INSERT INTO products (name, description, price_minor, stock, created_at_ms, updated_at_ms)
SELECT initcap(adjective) || ' ' || initcap(origin) || ' ' || kind || ' ' || i,
       'A ' || adjective || ' ' || kind || ' from ' || initcap(origin) || ', lot ' || i || '.',
       100 + (i * 7919) % 10000,            -- 10,000 prices: a hundred products share each at 1M
       CASE WHEN i % 10 = 0 THEN 0 ELSE i % 50 + 1 END,
       1700000000000 + i, 1700000000000 + i
FROM generate_series(1::bigint, $n) AS i,
     LATERAL (SELECT (ARRAY['smoky','floral','bright','grassy','malty','sweet','earthy','fruity','toasty',
                            'mellow','brisk','nutty','spicy','creamy','delicate','robust','golden'])[1 + i % 17]
                     AS adjective,
                     (ARRAY['assam','darjeeling','yunnan','fujian','ceylon','kenya','nilgiri','uji',
                            'shizuoka','anhui','taiwan','nepal','hunan'])[1 + i % 13] AS origin,
                     (ARRAY['black tea','green tea','white tea','oolong tea','yellow tea','herbal tea',
                            'teapot','tea cup','tea set','matcha','chai'])[1 + i % 11] AS kind) AS words;

INSERT INTO product_categories (product_id, category_id)
SELECT p.id, c.id FROM products p JOIN categories c ON c.slug = 'category-' || (1 + p.id % 10);
SQL
    psql_db "$db" -c "VACUUM ANALYZE"
}

# The cursor of the row in the middle of a sort, as the service writes it.
middle_cursor() {
    local db=$1 order=$2 key=$3 n=$4
    psql_db "$db" -At -c "SELECT $key FROM products p ORDER BY $order OFFSET $((n / 2)) LIMIT 1"
}

median_ms() {
    sort -n | awk '{ a[NR] = $1 } END { printf "%.1f", a[int((NR + 1) / 2)] * 1000 }'
}

# Seconds the inventory service has spent answering ListProducts so far.
list_seconds() {
    curl -s "$METRICS/metrics" | awk '/^grpc_server_handling_seconds_sum/ && /ListProducts/ { sum += $NF } END { printf "%.9f", sum }'
}

# The median server time of SAMPLES uncached fetches of the list at PATH.
time_list() {
    local base=$1 path=$2 sep='?'
    [[ $path == *\?* ]] && sep='&'
    for s in $(seq 0 $((SAMPLES - 1))); do
        local url="$base$path${sep}page_size=$((20 + s))"
        local before after status
        before=$(list_seconds)
        status=$(curl -s -o "$WORK/body" -w '%{http_code}' -H 'Accept: application/json' "$url")
        if [ "$status" != 200 ]; then
            echo "GET $url: $status $(head -c 300 "$WORK/body")" >&2
            return 1
        fi
        after=$(list_seconds)
        awk -v a="$after" -v b="$before" 'BEGIN { printf "%.9f\n", a - b }'
    done | median_ms
}

run_size() {
    local n=$1 port=$2
    local db="bench_products_$n"
    local env=(SHOP_POSTGRES_URL="$PG_URL" POSTGRES_DB_INVENTORY="$db" SHOP_DATA_DIR="$WORK/data-$n"
               SHOP_INTERNAL_SECRET="scale-products-bench-secret-0123456789" SHOP_LOG_FORMAT=json RUST_LOG=warn)
    local have=
    if [ -n "${REUSE:-}" ]; then
        have=$(psql_db "$db" -At -c "SELECT count(*) FROM products" 2>/dev/null || true)
    fi
    if [ "$have" = "$n" ]; then
        env "${env[@]}" "$SHOP_BIN" migrate inventory >/dev/null
        psql_db "$db" -c "VACUUM ANALYZE"
        echo "# $n products: kept database reused, migrated and analysed" >&2
    else
        psql -X -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
        env "${env[@]}" "$SHOP_BIN" migrate inventory >/dev/null
        local started=$SECONDS
        populate "$db" "$n"
        echo "# $n products inserted and analysed in $((SECONDS - started)) s" >&2
    fi

    env "${env[@]}" SHOP_INVENTORY_ADDR="127.0.0.1:$((port + 1))" SHOP_METRICS_ADDR="127.0.0.1:$((port + 2))" \
        "$SHOP_BIN" inventory >"$WORK/inventory-$n.log" 2>&1 &
    PIDS+=($!)
    env "${env[@]}" SHOP_INVENTORY_URL="http://127.0.0.1:$((port + 1))" SHOP_HTTP_ADDR="127.0.0.1:$port" \
        SHOP_METRICS_ADDR="127.0.0.1:$((port + 3))" "$SHOP_BIN" gateway >"$WORK/gateway-$n.log" 2>&1 &
    PIDS+=($!)
    local base="http://127.0.0.1:$port"
    METRICS="http://127.0.0.1:$((port + 2))"
    for _ in $(seq 1 100); do
        curl -sf -o /dev/null "$base/products?page_size=1" -H 'Accept: application/json' && break
        sleep 0.2
    done

    local newest price_low price_high name
    newest="i$((n / 2))"
    price_low=$(middle_cursor "$db" "price_minor ASC, id DESC" "'i' || price_minor || '.i' || id" "$n")
    price_high=$(middle_cursor "$db" "price_minor DESC, id DESC" "'i' || price_minor || '.i' || id" "$n")
    name=$(middle_cursor "$db" "lower(name), id" "'t' || encode(convert_to(lower(name), 'UTF8'), 'hex') || '.i' || id" "$n")
    local category_middle
    category_middle=$(psql_db "$db" -At -c "SELECT 'i' || product_id FROM product_categories pc
        JOIN categories c ON c.id = pc.category_id WHERE c.slug = 'category-3'
        ORDER BY product_id DESC OFFSET $((n / 20)) LIMIT 1")

    row() { printf '| %-9s | %-34s | %7s | %7s | %7s |\n' "$n" "$1" "$2" "$3" "$4"; }
    sorted() {
        local label=$1 query=$2 cursor=$3
        local q=${query:+$query&}
        row "$label" "$(time_list "$base" "/products${query:+?$query}")" \
            "$(time_list "$base" "/products?${q}after=$cursor")" "$(time_list "$base" "/products?${q}last=1")"
    }
    sorted "newest" "" "$newest"
    sorted "price low to high" "sort=price-low" "$price_low"
    sorted "price high to low" "sort=price-high" "$price_high"
    sorted "name" "sort=name" "$name"
    sorted "category, newest" "category=category-3" "$category_middle"
    local cat_price
    cat_price=$(psql_db "$db" -At -c "SELECT 'i' || p.price_minor || '.i' || p.id FROM products p
        JOIN product_categories pc ON pc.product_id = p.id JOIN categories c ON c.id = pc.category_id
        WHERE c.slug = 'category-3' ORDER BY p.price_minor, p.id DESC OFFSET $((n / 20)) LIMIT 1")
    sorted "category, price low to high" "category=category-3&sort=price-low" "$cat_price"
    sorted "in stock, 5-20 €, name" "in_stock=1&min_price=5&max_price=20&sort=name" "$name"
    row "search 'tea' (every product)" "$(time_list "$base" "/products?q=tea")" "-" "-"
    row "search 'darjeeling' (1 in 13)" "$(time_list "$base" "/products?q=darjeeling")" "-" "-"
    row "search 'smoky darjeeling'" "$(time_list "$base" "/products?q=smoky+darjeeling")" "-" "-"
    row "search 'darjeling' (typo)" "$(time_list "$base" "/products?q=darjeling")" "-" "-"
    row "search 'tea', by price" "$(time_list "$base" "/products?q=tea&sort=price-low")" \
        "$(time_list "$base" "/products?q=tea&sort=price-low&after=$price_low")" \
        "$(time_list "$base" "/products?q=tea&sort=price-low&last=1")"

    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    PIDS=()
    [ -n "${KEEP:-}" ] || psql -X -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $db"
}

echo "ListProducts server time (inventory), fetched through the gateway uncached, median of $SAMPLES, ms; $SHOP_BIN"
printf '| %-9s | %-34s | %7s | %7s | %7s |\n' products list first middle last
echo "|-----------|------------------------------------|---------|---------|---------|"
port=18380
for n in "${SIZES[@]}"; do
    run_size "$n" "$port"
    port=$((port + 10))
done
