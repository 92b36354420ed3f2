#!/usr/bin/env bash
# Shoppers against a running shop, with Locust (tests/load/locustfile.py):
# each registers an account, then browses, searches, opens products and
# categories, fills the cart, checks out and looks at their orders, in the
# shares a shop sees (many more looks than orders). Prints, per request,
# its count, failures, rate and p50/p95/p99; exits non-zero on any failure.
#
#   ops/load.sh [BASE_URL] [DURATION] [USERS]
#       BASE_URL   default http://127.0.0.1:8080 (or SHOP_URL)
#       DURATION   how long to run: 30s, 5m, 1h (a bare number is seconds; default 30s)
#       USERS      shoppers at once (default 10)
#
# An empty shop needs an admin to load the demo catalogue into; checkout
# needs a delivery method (made by the admin if there is none):
#   SHOP_LOAD_ADMIN_EMAIL, SHOP_LOAD_ADMIN_PASSWORD   an admin of that shop
# Other settings (tests/load/locustfile.py says more):
#   SHOP_LOAD_WAIT         a shopper's thinking time between steps, s: "1-3" (default) or "0"
#   SHOP_LOAD_SIGNUPS_PER_MINUTE   registrations a minute (25; the shop lets 30 through per address)
#   SHOP_LOAD_SPAWN_RATE   shoppers started a second (default: all within 1 s, at most 10 a second)
#   SHOP_LOAD_CSV          keep Locust's CSV files with this prefix (e.g. target/load/run)
#
# Needs Locust in the repo's virtualenv (target/test-venv), which ops/test.sh
# makes; or make it alone with
#   python3 -m venv target/test-venv && target/test-venv/bin/pip install -r tests/load/requirements.txt
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE=${1:-${SHOP_URL:-http://127.0.0.1:8080}}
DURATION=${2:-30s}
USERS=${3:-10}
VENV=${SHOP_LOAD_VENV:-$ROOT/target/test-venv}
[[ $DURATION =~ ^[0-9]+$ ]] && DURATION="${DURATION}s"
[[ $USERS =~ ^[1-9][0-9]*$ ]] || { echo "ops/load.sh: USERS must be a whole number above 0, not '$USERS'" >&2; exit 2; }
SPAWN_RATE=${SHOP_LOAD_SPAWN_RATE:-$((USERS < 10 ? USERS : 10))}

if [[ ! -x "$VENV/bin/locust" ]]; then
    echo "ops/load.sh: no Locust in $VENV. Make the virtualenv with ops/test.sh, or alone with:" >&2
    echo "    python3 -m venv $VENV && $VENV/bin/pip install -r tests/load/requirements.txt" >&2
    exit 2
fi
wanted=$(sed -n 's/^locust==//p' "$ROOT/tests/load/requirements.txt")
have=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("locust"))')
[[ "$have" == "$wanted" ]] ||
    echo "ops/load.sh: warning: $VENV has Locust $have, tests/load/requirements.txt pins $wanted" >&2

WORK=$(mktemp -d "${TMPDIR:-/tmp}/shop-load.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
CSV=${SHOP_LOAD_CSV:-$WORK/load}
mkdir -p "$(dirname "$CSV")"

echo "load: $USERS shoppers (started $SPAWN_RATE a second) for $DURATION against $BASE, thinking ${SHOP_LOAD_WAIT:-1-3} s between steps"
status=0
# Locust's own summary and log go to a file; its lines about the shop
# (what it prepared) and any warning or error are shown.
"$VENV/bin/locust" -f "$ROOT/tests/load/locustfile.py" --headless --only-summary \
    --host "$BASE" --users "$USERS" --spawn-rate "$SPAWN_RATE" --run-time "$DURATION" \
    --stop-timeout 10 --csv "$CSV" >"$WORK/locust.log" 2>&1 || status=$?
grep -E '/(WARNING|ERROR|CRITICAL)/|shop-load:' "$WORK/locust.log" | sed 's/^/  /' || true
"$VENV/bin/python" "$ROOT/tests/load/report.py" "$CSV" || status=$((status ? status : 1))
[[ $status -eq 0 ]] || echo "load: FAILED (exit $status)" >&2
exit "$status"
