#!/usr/bin/env bash
# A curl-driven smoke test of a running shop: register, sign in with a
# cookie jar, make a product as an admin, browse, order, change the order's
# status, and check content negotiation. Stops at the first failure.
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

step "a customer may not make products"
json customer POST /products 403 --data '{"name":"Nope","price_minor":1,"stock":1}'
header_has 'content-type: application/problem+json'

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

step "the customer fills the cart and checks out with the form"
req customer POST /cart/items 303 --data "product_id=$TEAPOT&quantity=2"
req customer POST /cart/items 303 --data "product_id=$CUPS&quantity=3"
json customer GET /cart 200
[ "$(field "['total_minor']")" = $((2 * 3450 + 3 * 450)) ] || fail "the cart total is wrong"
req customer POST /orders 303 -H 'Content-Type: application/x-www-form-urlencoded' --data ''
ORDER=$(sed -n 's/^[Ll]ocation: \/orders\/\([0-9]*\).*/\1/p' "$WORK/headers" | tr -d '\r')
[ -n "$ORDER" ] || fail "no Location for the order"
json customer GET "/orders/$ORDER" 200
[ "$(field "['status']")" = confirmed ] || fail "the order is not confirmed"
[ "$(field "['total_minor']")" = $((2 * 3450 + 3 * 450)) ] || fail "the order total is not inventory's"
json customer GET "/products/$TEAPOT" 200
[ "$(field "['stock']")" = 3 ] || fail "the teapot's stock did not go down"

step "ordering with JSON; a client-sent price is ignored; too much is refused"
json customer POST /orders 201 --data "{\"items\":[{\"product_id\":$CUPS,\"quantity\":1,\"unit_price_minor\":1}]}"
[ "$(field "['total_minor']")" = 450 ] || fail "a client-sent price was used"
json customer POST /orders 409 --data "{\"items\":[{\"product_id\":$TEAPOT,\"quantity\":50}]}"
body_has 'not enough stock'

step "status changes: not by the customer, yes by the admin"
json customer PATCH "/orders/$ORDER/status" 403 --data '{"status":"shipped"}'
json admin PATCH "/orders/$ORDER/status" 200 --data '{"status":"shipped"}'
[ "$(field "['status']")" = shipped ] || fail "the order did not ship"
json admin PATCH "/orders/$ORDER/status" 409 --data '{"status":"cancelled"}'
json admin PATCH "/orders/$ORDER/status" 422 --data '{"status":"lost"}'

step "privacy: a customer sees only their own things"
json customer GET "/users/$ADMIN_ID" 404
req customer GET "/users?id=$ADMIN_ID" 303
json admin GET "/orders/$ORDER" 200
json customer GET /orders 200
[ "$(field "['total']")" -ge 2 ] || fail "the customer's orders are missing"

step "signing out ends the session"
json customer POST /users/logout 204
json customer GET /orders 401
req customer GET /orders 303 -H 'Accept: text/html'
header_has '^location: /users/login'

printf '\nsmoke: all checks passed against %s\n' "$BASE"
