#!/usr/bin/env bash
# A curl-driven smoke test of a running shop: register, sign in with a
# cookie jar, make products, a category, a delivery method and a picture as
# an admin, search with a typo, fill the cart and order it (JSON, and the
# checkout's steps as plain forms), pay and ship with a tracking reference,
# keep an address book, ask for a password reset, and check content
# negotiation. Stops at the first failure.
#
#   ops/smoke.sh [BASE_URL]             (default http://127.0.0.1:8080)
#
# Making the admin needs the `shop` binary with the same settings as the
# running shop (the same SHOP_DATA_DIR or SHOP_POSTGRES_URL):
#   SHOP_MAKE_ADMIN   command that promotes an email (default: "target/release/shop make-admin")
set -euo pipefail

BASE=${1:-${SHOP_URL:-http://127.0.0.1:8080}}
MAKE_ADMIN=${SHOP_MAKE_ADMIN:-target/release/shop make-admin}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/shop-smoke.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
RUN="smoke$(date +%s)$RANDOM"
CUSTOMER="$RUN-customer@example.com"
ADMIN="$RUN-admin@example.com"
PASSWORD="correct horse battery staple"

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; [ -s "$WORK/body" ] && { printf -- '--- response body:\n' >&2; head -c 2000 "$WORK/body" >&2; printf '\n' >&2; }; exit 1; }

# req JAR METHOD PATH EXPECTED_STATUS [curl args...]: the body lands in
# $WORK/body, the headers in $WORK/headers.
req() {
  local jar=$1 method=$2 path=$3 expected=$4
  shift 4
  local status
  status=$(curl -sS -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' -X "$method" \
    -b "$WORK/$jar.jar" -c "$WORK/$jar.jar" "$@" "$BASE$path") || fail "$method $path: curl could not connect to $BASE"
  [ "$status" = "$expected" ] || fail "$method $path: expected HTTP $expected, got $status"
  printf '  %s %s -> %s\n' "$method" "$path" "$status"
}
json() { req "$1" "$2" "$3" "$4" -H 'Accept: application/json' -H 'Content-Type: application/json' "${@:5}"; }
body_has() { grep -q -- "$1" "$WORK/body" || fail "the response does not contain: $1"; }
body_lacks() { ! grep -q -- "$1" "$WORK/body" || fail "the response should not contain: $1"; }
header_has() { grep -qi -- "$1" "$WORK/headers" || fail "no header matching: $1"; }
field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval("d"+sys.argv[2]))' "$WORK/body" "$1"; }
# value EXPR: a Python expression over the JSON body `d`; a tuple prints
# space-separated, for `read`.
value() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); v=eval(sys.argv[2]); print(*v) if isinstance(v, tuple) else print(v)' "$WORK/body" "$1"; }
# json_is WHAT EXPR WANTED [EXPR WANTED...]: each Python expression over the
# JSON body `d` must print as WANTED; one Python run, every difference named.
json_is() {
  local what=$1 wrong
  shift
  wrong=$(python3 - "$WORK/body" "$@" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for expr, wanted in zip(sys.argv[2::2], sys.argv[3::2]):
    try:
        got = str(eval(expr))
    except Exception as error:  # a missing field, say
        got = f"<{type(error).__name__}: {error}>"
    if got != wanted:
        print(f"{expr} is {got}, expected {wanted};", end=" ")
PY
  ) || wrong="the response is not JSON"
  [ -z "$wrong" ] || fail "$what: $wrong"
}
# expect WHAT ACTUAL WANTED: fails with both values when they differ.
expect() { [ "$2" = "$3" ] || fail "$1: expected $3, got $2"; }
location() { sed -n 's/^[Ll]ocation: *//p' "$WORK/headers" | tr -d '\r'; }

step "the gateway answers at $BASE"
req anon GET /healthz 200
body_has ok

step "a customer registers with the HTML form, and is signed in"
req customer POST /users/register 303 --data-urlencode "name=Smoke Customer" --data-urlencode "email=$CUSTOMER" --data-urlencode "password=$PASSWORD"
header_has '^location: /'
grep -q shop_session "$WORK/customer.jar" || fail "no session cookie after registering"
req customer GET / 200
body_has "Smoke Customer"

step "an admin-to-be registers with JSON, and is made admin by the CLI"
json admin POST /users/register 201 --data "{\"name\":\"Smoke Admin\",\"email\":\"$ADMIN\",\"password\":\"$PASSWORD\"}"
header_has '^location: /users/'
ADMIN_ID=$(field "['id']")
$MAKE_ADMIN "$ADMIN" || fail "could not make $ADMIN an admin with: $MAKE_ADMIN"
json admin POST /users/login 200 --data "{\"email\":\"$ADMIN\",\"password\":\"$PASSWORD\"}"
[ "$(field "['role']")" = admin ] || fail "the admin is not an admin after signing in again"

step "the admin adds products (JSON and form)"
json admin POST /products 201 --data "{\"name\":\"Smoke teapot $RUN\",\"description\":\"Cast iron.\",\"price_minor\":3450,\"stock\":5}"
header_has '^location: /products/'
TEAPOT=$(field "['id']")
req admin POST /products 303 -H 'Accept: text/html' --data-urlencode "name=Smoke cups $RUN" --data-urlencode "price=4.50" --data-urlencode "stock=10"
CUPS=$(sed -n 's/^[Ll]ocation: \/products\/\([0-9]*\).*/\1/p' "$WORK/headers" | tr -d '\r')
[ -n "$CUPS" ] || fail "no Location for the product made by the form"

step "the admin adds a category, puts the teapot in it, and adds a delivery method"
json admin POST /categories 201 --data "{\"name\":\"Smoke teaware $RUN\"}"
read -r CATEGORY SLUG <<<"$(value "d['id'], d['slug']")"
[ -n "$SLUG" ] || fail "the category has no slug"
json admin PUT "/products/$TEAPOT" 200 --data "{\"category_ids\":[$CATEGORY]}"
json_is "the teapot's category" "d['categories'][0]['slug']" "$SLUG"
json anon GET /categories 200
json_is "the category list" "[c['product_count'] for c in d if c['id'] == $CATEGORY]" "[1]"
json admin POST /delivery-methods 201 --data "{\"name\":\"Smoke courier $RUN\",\"price_minor\":490,\"free_above_minor\":100000}"
METHOD=$(field "['id']")
json_is "the delivery method is offered" "d['active']" True

step "a customer may not make products, categories or delivery methods"
json customer POST /products 403 --data '{"name":"Nope","price_minor":1,"stock":1}'
header_has 'content-type: application/problem+json'
json customer POST /categories 403 --data '{"name":"Nope"}'
json customer GET /delivery-methods 403

step "the admin uploads a picture of the teapot; it is served by its hash, cached for good"
# A 4x3 PNG made here, its colour from this run (so each run's bytes differ).
python3 - "$WORK/teapot.png" "$RANDOM" <<'PY_PNG' || fail "could not make a PNG with python3"
import struct, sys, zlib
width, height, seed = 4, 3, int(sys.argv[2])
rows = b"".join(b"\0" + bytes([seed % 256, (seed >> 8) % 256, 90]) * width for _ in range(height))
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
with open(sys.argv[1], "wb") as out:
    out.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
PY_PNG
req admin POST "/products/$TEAPOT/images" 201 -H 'Accept: application/json' \
  -F "image=@$WORK/teapot.png;type=image/png" -F "alt=A smoke-grey cast-iron teapot"
json_is "the picture's alt text" "d['images'][0]['alt']" "A smoke-grey cast-iron teapot"
read -r PICTURE THUMBNAIL <<<"$(value "d['images'][0]['large']['url'], d['images'][0]['thumbnail']['url']")"
[[ $PICTURE =~ ^/images/[0-9a-f]{64}$ ]] || fail "the picture's URL is not /images/<sha-256>: $PICTURE"
printf 'not a picture' >"$WORK/fake.png"
req admin POST "/products/$TEAPOT/images" 422 -H 'Accept: application/json' \
  -F "image=@$WORK/fake.png;type=image/png" -F "alt=Nothing"
req anon GET "$PICTURE" 200
header_has '^content-type: image/'
header_has '^cache-control: .*immutable'
ETAG=$(sed -n 's/^[Ee][Tt][Aa][Gg]: *//p' "$WORK/headers" | tr -d '\r')
expect "the picture's ETag" "$ETAG" "\"${PICTURE#/images/}\""
req anon GET "$PICTURE" 304 -H "If-None-Match: $ETAG"
req anon GET "/images/$(printf '0%.0s' {1..64})" 404

step "browsing, in every representation"
req customer GET "/products?page=1&page_size=5" 200
body_has '<!doctype html>'
req customer GET "/products/$TEAPOT" 200 -H 'Accept: application/json'
header_has 'content-type: application/json'
[ "$(field "['price_minor']")" = 3450 ] || fail "the teapot's price is wrong"
req customer GET "/products/$TEAPOT" 200 -H 'HX-Request: true'
body_lacks '<!doctype html>'
body_has "Smoke teapot $RUN"
json customer GET /products/999999999 404
body_has '"status":404'

step "a search with a typo finds the teapot; filters and sort are kept in the URL"
FILTERS="category=$SLUG&sort=price-low&in_stock=1&min_price=10&max_price=50"
json customer GET "/products?q=teapto&$FILTERS" 200
json_is "the products found for 'teapto'" \
  "[p['id'] for p in d['products']]" "[$TEAPOT]" \
  "d['searched_for']" teapot \
  "d['products'][0]['images'][0]['large']['url']" "$PICTURE"
json customer GET "/products?q=teapot&category=$SLUG&max_price=20" 200
json_is "teapots under 20.00" "d['total']" 0
req customer GET "/products?q=teapto&$FILTERS" 200 -H 'Accept: text/html'
body_has "Smoke teapot $RUN"
body_has "${THUMBNAIL#/images/}"  # the template writes the URL with &#x2f; for /
json customer GET "/products?category=no-such-category-$RUN" 404

step "the customer fills the cart and orders it with JSON: address, delivery, bank transfer, terms"
req customer POST /cart/items 303 --data "product_id=$TEAPOT&quantity=2"
req customer POST /cart/items 303 --data "product_id=$CUPS&quantity=3"
json customer GET /cart 200
SUBTOTAL=$((2 * 3450 + 3 * 450))
json_is "the cart total" "d['total_minor']" "$SUBTOTAL"
ADDRESS='{"name":"Smoke Customer","line1":"1 rue de la Paix","postcode":"75002","city":"Paris","country":"FR","phone":"+33 1 23 45 67 89"}'
json customer POST /orders 422 --data "{\"delivery_address\":$ADDRESS,\"delivery_method_id\":$METHOD,\"payment_method\":\"bank_transfer\"}"
body_has terms
json customer POST /orders 201 -H "Idempotency-Key: $RUN-cart" --data "{\"delivery_address\":$ADDRESS,\"delivery_method_id\":$METHOD,\"payment_method\":\"bank_transfer\",\"terms_accepted\":true}"
header_has '^location: /orders/'
read -r ORDER CUSTOMER_ID <<<"$(value "d['id'], d['user_id']")"
json_is "the order" \
  "d['status']" confirmed \
  "d['subtotal_minor']" "$SUBTOTAL" \
  "d['delivery_minor']" 490 \
  "d['total_minor']" $((SUBTOTAL + 490)) \
  "d['delivery_method']" "Smoke courier $RUN" \
  "d['delivery_address']['city']" Paris \
  "d['payment_method']" bank_transfer \
  "d['payment_state']" unpaid \
  "bool(d['payment_reference'])" True
json customer GET /cart 200
json_is "the cart after ordering it" "d['count']" 0
json customer GET "/products/$TEAPOT" 200
json_is "the teapot's stock after the order" "d['stock']" 3
req customer GET "/orders/$ORDER/confirmation" 200 -H 'Accept: text/html'
body_has "order #$ORDER"
body_has 'payment-reference'

step "the checkout's steps as plain forms: address, delivery, cash on delivery, review, place; sent twice, one order"
req customer POST /cart/items 303 --data "product_id=$CUPS&quantity=1"
req customer GET /checkout 303 -H 'Accept: text/html'
expect "where checkout starts" "$(location)" /checkout/address
req customer POST /checkout/address 303 --data "address_id=new" --data-urlencode "name=Smoke Customer" \
  --data-urlencode "line1=2 Smoke Street" --data-urlencode "postcode=1011 AB" --data-urlencode "city=Amsterdam" --data "country=NL"
expect "after the address" "$(location)" /checkout/delivery
req customer POST /checkout/delivery 303 --data "delivery_method_id=$METHOD"
expect "after the delivery method" "$(location)" /checkout/payment
req customer POST /checkout/payment 303 --data "payment_method=cash_on_delivery"
expect "after the payment method" "$(location)" /checkout/review
req customer GET /checkout/review 200 -H 'Accept: text/html'
body_has "Smoke cups $RUN"
body_has "Smoke courier $RUN"
KEY=$(sed -n 's/.*name="idempotency_key" value="\([^"]*\)".*/\1/p' "$WORK/body" | head -n1)
[ -n "$KEY" ] || fail "the review form has no idempotency key"
req customer POST /checkout 422 --data "idempotency_key=$KEY"
body_has 'accept the terms'
req customer POST /checkout 303 --data "idempotency_key=$KEY&terms=on"
CONFIRMATION=$(location)
[[ $CONFIRMATION =~ ^/orders/[0-9]+/confirmation$ ]] || fail "placing the order did not lead to its confirmation page: $CONFIRMATION"
req customer POST /checkout 303 --data "idempotency_key=$KEY&terms=on"
expect "the same form sent again (Back, then submit)" "$(location)" "$CONFIRMATION"
FORM_ORDER=${CONFIRMATION#/orders/}
FORM_ORDER=${FORM_ORDER%/confirmation}
json customer GET "/orders/$FORM_ORDER" 200
json_is "the form order" \
  "d['payment_method']" cash_on_delivery \
  "d['delivery_address']['city']" Amsterdam \
  "d['total_minor']" $((450 + 490))

step "ordering with JSON; a client-sent price is ignored; too much is refused"
json customer POST /orders 201 --data "{\"items\":[{\"product_id\":$CUPS,\"quantity\":1,\"unit_price_minor\":1}]}"
[ "$(field "['total_minor']")" = 450 ] || fail "a client-sent price was used"
json customer POST /orders 409 --data "{\"items\":[{\"product_id\":$TEAPOT,\"quantity\":50}]}"
body_has 'not enough stock'

step "payment and shipping: an unpaid bank transfer waits; the admin marks it paid and ships it with a tracking reference"
json customer PATCH "/orders/$ORDER/status" 403 --data '{"status":"shipped"}'
json admin PATCH "/orders/$ORDER/status" 409 --data '{"status":"shipped","tracking_reference":"SMOKE-1"}'
body_has 'payment-required'
json customer POST "/orders/$ORDER/payment" 403 --data '{"state":"paid"}'
json admin POST "/orders/$ORDER/payment" 422 --data '{"state":"free"}'
json admin POST "/orders/$ORDER/payment" 200 --data '{"state":"paid"}'
json_is "the payment state" "d['payment_state']" paid
json admin PATCH "/orders/$ORDER/status" 200 --data "{\"status\":\"shipped\",\"tracking_reference\":\"SMOKE-$RUN\"}"
json_is "the status" "d['status']" shipped
json admin PATCH "/orders/$ORDER/status" 409 --data '{"status":"cancelled"}'
json admin PATCH "/orders/$ORDER/status" 422 --data '{"status":"lost"}'
json customer GET "/orders/$ORDER" 200
json_is "the customer's order" \
  "d['status']" shipped \
  "d['tracking_reference']" "SMOKE-$RUN" \
  "d['payment_state']" paid
req admin GET "/orders/$ORDER/packing-slip" 200 -H 'Accept: text/html'
body_has '1 rue de la Paix'
body_has "Smoke teapot $RUN"
req customer GET "/orders/$ORDER/packing-slip" 403 -H 'Accept: text/html'

step "the customer's address book; the admins' customers screen"
json customer GET "/users/$CUSTOMER_ID/addresses" 200
json_is "the address the checkout kept" "[a['city'] for a in d['addresses']]" "['Amsterdam']"
json customer POST "/users/$CUSTOMER_ID/addresses" 201 --data "$ADDRESS"
header_has "^location: /users/$CUSTOMER_ID/addresses/"
ADDRESS_ID=$(field "['id']")
json_is "the new address's country" "d['country_name']" France
json customer GET "/users/$CUSTOMER_ID/addresses/$ADDRESS_ID" 200
json customer POST "/users/$CUSTOMER_ID/addresses" 422 --data '{"name":"","line1":"","postcode":"","city":"","country":"ZZ"}'
json admin POST "/users/$CUSTOMER_ID/addresses" 404 --data "$ADDRESS"
json admin GET "/users/$CUSTOMER_ID/addresses/$ADDRESS_ID" 200
json customer GET /customers 403
json admin GET "/customers?q=$RUN-customer" 200
json_is "the customers found" \
  "[c['id'] for c in d['customers']]" "[$CUSTOMER_ID]" \
  "d['customers'][0]['orders_count']" 3
json admin GET "/customers/$CUSTOMER_ID" 200
json_is "the customer's addresses, for the admin" "len(d['addresses'])" 2

step "a password reset request answers the same for an unknown and a known email"
json anon POST /users/password-reset 202 --data "{\"email\":\"$RUN-nobody@example.com\"}"
cp "$WORK/body" "$WORK/reset-unknown"
json anon POST /users/password-reset 202 --data "{\"email\":\"$CUSTOMER\"}"
cmp -s "$WORK/body" "$WORK/reset-unknown" || fail "the reset answer differs for a known email"
req anon GET /users/password-reset 200 -H 'Accept: text/html'
req anon GET "/users/password-reset/$(printf 'f%.0s' {1..64})" 200 -H 'Accept: text/html'
header_has '^referrer-policy: no-referrer'
json anon POST "/users/password-reset/$(printf 'f%.0s' {1..64})" 400 --data '{"new_password":"another horse battery staple"}'

step "privacy: a customer sees only their own things"
json customer GET "/users/$ADMIN_ID" 404
req customer GET "/users?id=$ADMIN_ID" 303
json admin GET "/orders/$ORDER" 200
json customer GET /orders 200
[ "$(field "['total']")" -ge 3 ] || fail "the customer's orders are missing"

step "signing out ends the session"
json customer POST /users/logout 204
json customer GET /orders 401
req customer GET /orders 303 -H 'Accept: text/html'
header_has '^location: /users/login'

printf '\nsmoke: all checks passed against %s\n' "$BASE"
