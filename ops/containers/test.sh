#!/usr/bin/env bash
# compose.yaml started for real in a container engine (Podman, rootful), the
# way an operator starts it, and checked from outside:
#
#   ops/containers/test.sh [--replicas N]
#
#   1. installs what is missing: podman, runc, debootstrap (apt-get), and
#      podman-compose 1.6 into the test virtualenv (target/test-venv);
#      Podman is configured by ops/containers/containers.conf (CONTAINERS_CONF);
#   2. a Debian bookworm base image from debootstrap, kept as
#      localhost/shop-standin-debian:bookworm for later runs; from it the
#      stand-ins for PostgreSQL, Redis, NATS, Prometheus, Tempo, Loki, Mailpit
#      and Grafana (ops/containers/standins/, localhost/shop-standin-*);
#   3. the shop's image from ./Dockerfile: its runtime stage as it is, and
#      instead of its compile stage the release binary from target/ (cargo
#      build --release, a no-op when it is up to date);
#   4. compose.yaml + ops/containers/compose.test.yaml up under a project name
#      of its own; every container healthy (this script runs the health checks:
#      Podman 4.3 without systemd runs none by itself);
#   5. ops/smoke.sh against the published gateway port, the admin made with
#      `podman exec <users container> shop make-admin`; Prometheus has every
#      shop target up; the Tempo stand-in holds a checkout's spans from
#      gateway, users, inventory and orders under one trace id; the Loki
#      stand-in holds JSON lines with that trace id (ops/containers/check_stack.py);
#   6. memory use (podman stats), then `down -v`, and nothing of the project
#      may be left: no container, pod, volume or network.
# Every sub-step prints how long it took. Cleans up on failure too.
#
# --replicas N: N replicas of every shop process (compose's `scale`, in the
# generated file beside the ports), a round-robin balancer
# (balancer.py) in front of the gateways in place of the published port; the
# checks then also ask each gateway replica directly (a session made through
# one is valid at the others, a changed product is seen changed at the
# others). Then, through the balancer and at once: ops/load.sh (10 shoppers,
# SHOP_CONTAINERS_LOAD_SECONDS, 60 s) and the order checker
# (backend/shop/tests/order_checker.rs, its ignored test against a shop it
# did not start: `cargo nextest run -p shop --test order_checker
# --run-ignored only`, the debug test binary the test command already built),
# whose fault schedule kills (SIGKILL) one replica of every shop process in
# turn, then one of each at once, and starts it again (replica.sh). Zero
# invariant violations (stock, idempotency keys, order.created once per
# order, read from the containers' PostgreSQL and NATS), and no failed load
# request beyond what a client's retry absorbs.
#
# Podman 4.3's network stack needs two things here (both in the functions'
# comments): the bridge's MAC address pinned once what the shop uses is up
# (pin_bridge_mac), and, after every start, a wait until every container
# resolves every service's name (wait_dns, replica.sh dns).
#
# Environment:
#   SHOP_IMAGE_BIN  the shop binary to put in the image, a release build
#               (default: target/release/shop, built or brought up to date
#               with cargo first)
#   SHOP_TEST_VENV  the virtualenv for podman-compose (default target/test-venv)
#   SHOP_CONTAINERS_KEEP=1  leave the stack running on failure, to look at it;
#                           =always: also when every check passed
#   SHOP_CONTAINERS_LOAD_SECONDS  how long ops/load.sh shops in the run with
#                           replicas (60)
#   SHOP_CHECKER_SEED       replays one order checker run's workload and
#                           fault schedule (its failure message prints it)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
HERE=ops/containers
export CONTAINERS_CONF="$ROOT/$HERE/containers.conf"
VENV=${SHOP_TEST_VENV:-$ROOT/target/test-venv}
COMPOSE_VERSION=1.6.0
BASE_IMAGE=localhost/shop-standin-debian:bookworm
STANDIN_TAG=test
REPLICAS=1
if [[ "${1:-}" == --replicas ]]; then
    REPLICAS=${2:?--replicas needs a number}
    [[ $REPLICAS =~ ^[1-9]$ ]] || { echo "--replicas: 1 to 9, not $REPLICAS" >&2; exit 2; }
fi

# Lower case and short: the project names the containers, volumes and network.
PROJECT="shopct$(date +%s | tail -c 6)$RANDOM"
TMP_DIR=$(mktemp -d "${TMPDIR:-/tmp}/shop-containers.XXXXXX")
SHOP_TEST_IMAGE="localhost/shop:$PROJECT"
STACK_UP=""
LOAD_PID=""
GATEWAY_URL=""
STARTED_AT=$SECONDS
TIMES=()

sub() {
    SUB="$1"
    SUB_STARTED=$SECONDS
    echo "    -> $SUB"
}
sub_done() {
    local took=$((SECONDS - SUB_STARTED))
    echo "       ($SUB: $took s)"
    TIMES+=("$(printf '%4d s  %s' "$took" "$SUB")")
}
die() {
    echo "error: $*" >&2
    exit 1
}
have() { type -P "$1" >/dev/null 2>&1; }  # a program, not the podman function below
# Podman runs rootful here: root runs it directly, anyone else through
# password-less sudo.
if [[ $(id -u) -eq 0 ]]; then SUDO=""
elif have sudo && sudo -n true 2>/dev/null; then SUDO="sudo -n"
else die "Podman runs rootful here: run as root or with password-less sudo"; fi
as_root() { $SUDO "$@"; }
podman() { $SUDO env "CONTAINERS_CONF=$CONTAINERS_CONF" podman "$@"; }
# A free port for a published port, below the kernel's ephemeral range
# (ip_local_port_range, 32768 and up): Podman publishes by a DNAT rule on
# every local address, so a published port in that range would capture the
# connections of whatever else bound it with port 0 meanwhile (a test's
# proxy, a client's own end), and a rule left by a killed run would keep
# doing so ("connection refused" from a port that is listening).
free_port() {
    python3 -c '
import random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for port in random.sample(range(20000, min(low, 32768)), 200):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
    print(port)
    break
else:
    raise SystemExit("no free port below the ephemeral range")'
}

COMPOSE=()
compose() { timeout "${COMPOSE_TIMEOUT:-300}" "${COMPOSE[@]}" "$@"; }

# What a project leaves in Podman, one line per object; empty when nothing.
leftovers() {
    podman ps -a --filter "label=io.podman.compose.project=$PROJECT" --format 'container {{.Names}}'
    podman pod ps --filter "name=$PROJECT" --format 'pod {{.Name}}'
    podman volume ls --format 'volume {{.Name}}' | grep -F " ${PROJECT}_" || true
    podman network ls --format 'network {{.Name}}' | grep -F " ${PROJECT}_" || true
    # A published port's DNAT rule outlives its container when Podman is
    # killed mid-way; `down` must have taken them all.
    iptables -t nat -S 2>/dev/null | grep -F "dnat name: ${PROJECT}_" | sed 's/^/firewall rule /' || true
}

# Removes whatever of the project is left, the hard way: the pod first (it
# takes its containers with it, whatever depends on what), then the rest,
# twice, since a container that others require goes only after them.
force_remove() {
    local kind name
    podman pod rm -f "pod_$PROJECT" >/dev/null 2>&1 || true
    for _ in 1 2; do
        while read -r kind name; do
            case $kind in
                container) podman rm -f -t 0 "$name" >/dev/null 2>&1 || true ;;
                pod) podman pod rm -f "$name" >/dev/null 2>&1 || true ;;
                volume) podman volume rm -f "$name" >/dev/null 2>&1 || true ;;
                network) podman network rm -f "$name" >/dev/null 2>&1 || true ;;
                *) ;;
            esac
        done < <(leftovers)
    done
    # Rules of a network that is gone: deleted one by one, as listed.
    local rule
    while read -r rule; do
        # iptables -S quotes the rule's comment as a shell would: eval unquotes it.
        eval "iptables -t nat -D ${rule#-A }" 2>/dev/null || true
    done < <(iptables -t nat -S 2>/dev/null | grep -F "dnat name: ${PROJECT}_" || true)
}

# Leaves the stack, its image and the files `down` needs (the generated one
# names the replicas) for someone to look at.
KEPT=""
keep_note() {
    KEPT=1
    SHOP_TEST_IMAGE=""
    echo "    SHOP_CONTAINERS_KEEP: leaving project $PROJECT running (gateway $GATEWAY_URL); stop it with"
    echo "      ${COMPOSE[*]} down -v"
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ -n "$STACK_UP" ]]; then
        if [[ $status -ne 0 ]]; then
            echo "    --- containers that are not healthy, and the end of their logs:" >&2
            show_unhealthy >&2 || true
            echo "    --- the shop's last warnings and errors:" >&2
            show_shop_errors >&2 || true
        fi
        if [[ $status -ne 0 && -n "${SHOP_CONTAINERS_KEEP:-}" ]]; then
            keep_note >&2
        else
            COMPOSE_TIMEOUT=120 compose down -v -t 20 >"$TMP_DIR/down.log" 2>&1 || true
            force_remove
        fi
    fi
    [[ -z "$SHOP_TEST_IMAGE" ]] || podman rmi "$SHOP_TEST_IMAGE" >/dev/null 2>&1 || true
    [[ -z "$BALANCER_PID" ]] || kill "$BALANCER_PID" 2>/dev/null || true
    [[ -z "$LOAD_PID" ]] || kill "$LOAD_PID" 2>/dev/null || true
    [[ -n "$KEPT" ]] || rm -rf "$TMP_DIR"
    if [[ $status -eq 0 ]]; then
        echo "    containers: every check passed in $((SECONDS - STARTED_AT)) s"
    else
        echo "    containers: FAILED in \"${SUB:-start}\" after $((SECONDS - STARTED_AT)) s" >&2
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------ tools

ensure_tools() {
    local missing=()
    have podman || missing+=(podman)
    have runc || missing+=(runc)
    have debootstrap || missing+=(debootstrap)
    have objcopy || missing+=(binutils)
    have curl || missing+=(curl)
    if [[ ${#missing[@]} -gt 0 ]]; then
        have apt-get || die "missing ${missing[*]} and no apt-get to install them"
        echo "       installing Debian's ${missing[*]}"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >"$TMP_DIR/apt.log" 2>&1 ||
            { cat "$TMP_DIR/apt.log" >&2; die "apt-get update failed"; }
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >>"$TMP_DIR/apt.log" 2>&1 ||
            { tail -n 30 "$TMP_DIR/apt.log" >&2; die "apt-get install ${missing[*]} failed"; }
    fi
    echo "       $(podman --version), runc $(runc --version | awk 'NR == 1 {print $3}')"

    # The test command's virtualenv, or one of our own when run alone.
    mkdir -p "$(dirname "$VENV")"
    exec 8>>"$VENV.lock"
    have flock && flock -x 8
    if [[ ! -x "$VENV/bin/python" ]]; then
        "${PYTHON:-python3}" -m venv "$VENV"
    fi
    if [[ "$("$VENV/bin/podman-compose" --version 2>/dev/null | grep -oE "[0-9]+\.[0-9]+\.[0-9]+" | head -n1)" != "$COMPOSE_VERSION" ]]; then
        echo "       pip install podman-compose==$COMPOSE_VERSION into $VENV"
        "$VENV/bin/python" -m pip install --disable-pip-version-check -q "podman-compose==$COMPOSE_VERSION"
    fi
    exec 8>&-
    echo "       podman-compose $COMPOSE_VERSION"
}

# ------------------------------------------------------------ images

# Debian bookworm (minbase) made with debootstrap and imported, once per
# machine: later runs find the image.
ensure_base_image() {
    if podman image exists "$BASE_IMAGE"; then
        echo "       $BASE_IMAGE is there (made by an earlier run)"
        return
    fi
    local rootfs="$TMP_DIR/rootfs"
    echo "       debootstrap --variant=minbase bookworm"
    as_root debootstrap --variant=minbase bookworm "$rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" \
        >"$TMP_DIR/debootstrap.log" 2>&1 || { tail -n 30 "$TMP_DIR/debootstrap.log" >&2; die "debootstrap failed"; }
    # What an image needs no copy of: downloaded packages, package lists,
    # documentation.
    as_root rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
    as_root tar -C "$rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
    as_root rm -rf "$rootfs"
}

# The stand-ins: built on every run, which costs a second or two once Podman's
# layer cache has them (a changed Containerfile or script is rebuilt).
build_standins() {
    local name target
    for name in postgres redis nats prometheus; do
        podman build -q --build-arg "BASE=$BASE_IMAGE" -t "localhost/shop-standin-$name:$STANDIN_TAG" \
            "$HERE/standins/$name" >"$TMP_DIR/build-$name.log" 2>&1 ||
            { tail -n 30 "$TMP_DIR/build-$name.log" >&2; die "building the $name stand-in failed"; }
    done
    for target in tempo loki mailpit grafana; do
        podman build -q --build-arg "BASE=$BASE_IMAGE" --target "$target" \
            -t "localhost/shop-standin-$target:$STANDIN_TAG" "$HERE/standins/receivers" >"$TMP_DIR/build-$target.log" 2>&1 ||
            { tail -n 30 "$TMP_DIR/build-$target.log" >&2; die "building the $target stand-in failed"; }
    done
}

# The release binary, as ./Dockerfile's compile stage makes it: only a
# release build embeds web/templates and web/static (a debug build of
# rust-embed reads them from the source tree, which the image does not have:
# every page would fail). cargo builds it unless it is up to date, in the
# shared target/, so nothing compiles twice across steps and runs. Without its
# debug information: a smaller image, the same code.
shop_binary() {
    local bin=${SHOP_IMAGE_BIN:-}
    if [[ -z "$bin" ]]; then
        cargo build --release -q -p shop
        bin=target/release/shop
    fi
    [[ -x "$bin" ]] || die "SHOP_IMAGE_BIN=$bin is not an executable"
    mkdir -p "$TMP_DIR/builder/usr/local/bin" "$TMP_DIR/builder/etc/ssl/certs"
    # The builder image's CA bundle is Debian's, as the host's is.
    cp /etc/ssl/certs/ca-certificates.crt "$TMP_DIR/builder/etc/ssl/certs/" ||
        die "no /etc/ssl/certs/ca-certificates.crt here (Debian: apt-get install ca-certificates)"
    objcopy --strip-debug "$bin" "$TMP_DIR/builder/usr/local/bin/shop"
    echo "       $bin ($(du -m "$bin" | cut -f1) MiB; $(du -m "$TMP_DIR/builder/usr/local/bin/shop" | cut -f1) MiB without debug information)"
}

# ./Dockerfile as it is, with two build contexts standing in: `builder`, the
# Dockerfile's compile stage, is a directory holding /usr/local/bin/shop (a
# named context replaces the stage of the same name, in Podman as in Docker
# BuildKit, so the runtime stage copies our binary and nothing compiles), and
# debian:bookworm-slim is our Debian base.
build_shop_image() {
    podman build -q -f Dockerfile \
        --build-context "builder=$TMP_DIR/builder" \
        --build-context "debian:bookworm-slim=container-image://$BASE_IMAGE" \
        -t "$SHOP_TEST_IMAGE" . >"$TMP_DIR/build-shop.log" 2>&1 ||
        { tail -n 30 "$TMP_DIR/build-shop.log" >&2; die "building the shop's image from ./Dockerfile failed"; }
    # The image must answer as the Dockerfile says: entrypoint shop, user 10001.
    local user
    user=$(podman image inspect --format '{{.Config.User}} {{json .Config.Entrypoint}}' "$SHOP_TEST_IMAGE")
    [[ "$user" == '10001:10001 ["shop"]' ]] || die "the shop's image has user/entrypoint $user"
    # TLS to a managed Redis or NATS verifies against the system's roots.
    podman run --rm --network none --entrypoint /bin/sh "$SHOP_TEST_IMAGE" \
        -c 'test -s /etc/ssl/certs/ca-certificates.crt' || die "the shop's image has no CA bundle"
    echo "       $SHOP_TEST_IMAGE ($(podman image inspect --format '{{.Size}}' "$SHOP_TEST_IMAGE" |
        awk '{printf "%d MiB", $1 / 1048576}'))"
}

# ------------------------------------------------------------ the stack

SHOP_SERVICES=(users inventory orders notifications gateway)

# The project's containers, one name a line.
containers() {
    podman ps -a --filter "label=io.podman.compose.project=$PROJECT" --format '{{.Names}}' | sort
}
container_of() {  # container_of SERVICE [N]: the name of replica N (1)
    echo "${PROJECT}_$1_${2:-1}"
}

show_unhealthy() {
    local name
    for name in $(containers); do
        if ! podman healthcheck run "$name" >/dev/null 2>&1; then
            echo "    [$name] $(podman inspect --format '{{.State.Status}} (exit {{.State.ExitCode}}, restarts {{.RestartCount}})' "$name" 2>/dev/null)"
            podman logs --tail 15 "$name" 2>&1 | sed 's/^/        /'
        fi
    done
}

show_shop_errors() {
    local name
    for name in $(containers | grep -E "_($(IFS='|'; echo "${SHOP_SERVICES[*]}"))_[0-9]+$"); do
        podman logs "$name" 2>&1 | grep -E '"level":"(warn|error)"' | tail -n 5 | cut -c1-400 | sed "s/^/    [$name] /"
    done
}

# Runs every container's health check every 2 s, as Podman with systemd
# would, until all pass, for at most $1 seconds.
wait_healthy() {
    local deadline=$((SECONDS + $1)) name pending expected=$2
    while true; do
        pending=()
        local count=0
        for name in $(containers); do
            count=$((count + 1))
            podman healthcheck run "$name" >/dev/null 2>&1 || pending+=("$name")
        done
        if [[ $count -eq $expected && ${#pending[@]} -eq 0 ]]; then
            echo "       $count containers healthy"
            return 0
        fi
        if [[ $SECONDS -ge $deadline ]]; then
            echo "       $count of $expected containers there; not healthy after $1 s: ${pending[*]}" >&2
            return 1
        fi
        sleep 2
    done
}

start_stack() {
    local gateway_port prometheus_port
    gateway_port=$(free_port)
    prometheus_port=$(free_port)
    GATEWAY_URL="http://127.0.0.1:$gateway_port"
    PROMETHEUS_URL="http://127.0.0.1:$prometheus_port"
    # Published ports of this run's own (podman-compose does not interpolate
    # under the override file's `!override`, so they are written here).
    {
        echo "services:"
        # With replicas, no container can publish the gateway's port for the
        # others: the balancer below stands in front of them instead.
        [[ $REPLICAS -gt 1 ]] || printf '  gateway:\n    ports: ["127.0.0.1:%s:8080"]\n' "$gateway_port"
        printf '  prometheus:\n    ports: ["127.0.0.1:%s:9090"]\n' "$prometheus_port"
        if [[ $REPLICAS -gt 1 ]]; then
            for name in "${SHOP_SERVICES[@]}"; do
                # deploy.replicas is read by podman-compose 1.6 only with
                # deploy.mode spelled out; compose's `scale` is the same.
                printf '  %s:\n    scale: %d\n' "$name" "$REPLICAS"
            done
        fi
    } >"$TMP_DIR/ports.yaml"
    # The secrets compose.yaml wants from .env, random for this run.
    export SHOP_INTERNAL_SECRET POSTGRES_PASSWORD GRAFANA_ADMIN_PASSWORD SHOP_TEST_IMAGE
    SHOP_INTERNAL_SECRET=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
    POSTGRES_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
    GRAFANA_ADMIN_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
    export SHOP_STANDIN_TAG=$STANDIN_TAG
    COMPOSE=($SUDO env "CONTAINERS_CONF=$CONTAINERS_CONF" "$VENV/bin/podman-compose" -p "$PROJECT"
        -f compose.yaml -f "$HERE/compose.test.yaml" -f "$TMP_DIR/ports.yaml")
    STACK_UP=1
    echo "       project $PROJECT; gateway on $GATEWAY_URL, Prometheus on $PROMETHEUS_URL"
}

# The gateway replicas' addresses on the compose network (reachable from the
# host: Podman runs rootful), one HOST:PORT a line.
gateway_backends() {
    local i
    for i in $(seq "$REPLICAS"); do
        echo "$(podman inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' \
            "$(container_of gateway "$i")"):8080"
    done
}

# A round-robin balancer on a free loopback port in front of the gateway
# replicas (ops/containers/balancer.py), standing in for an operator's.
BALANCER_PID=""
start_balancer() {
    local port
    port=$(free_port)
    gateway_backends >"$TMP_DIR/backends"
    python3 "$HERE/balancer.py" "$port" "$TMP_DIR/backends" 2>"$TMP_DIR/balancer.log" &
    BALANCER_PID=$!
    GATEWAY_URL="http://127.0.0.1:$port"
    for _ in $(seq 50); do
        curl -fsS --max-time 2 -o /dev/null "$GATEWAY_URL/healthz" 2>/dev/null && break
        sleep 0.2
    done
    echo "       balancer on $GATEWAY_URL in front of $(tr '\n' ' ' <"$TMP_DIR/backends")"
}

# Podman 4.3's netavark (1.4) leaves the network bridge's MAC address to the
# kernel, which gives a bridge the lowest address among its ports: it changes
# when a container with a lower one starts, or when the one whose interface
# had it stops. Once the interface whose address a container learnt for the
# gateway is gone (its container killed, stopped or restarted), that
# container loses everything it sends to the gateway: its DNS (aardvark-dns
# answers on the gateway's address) and its answers to the host (the
# balancer, the checker's database connections), until its ARP entry is
# renewed: lookups took 30-40 s and failed ("Temporary failure in name
# resolution") in 6 of 8 containers after two others were killed and started
# again, on a network of plain Debian containers; none with the address
# pinned (netavark 1.9 pins it itself: containers/netavark#833). Pinned here
# to the address it has once what the shop uses is up and before the shop's
# containers start: the ports whose addresses a container may have learnt
# before are those of containers this test never stops.
pin_bridge_mac() {
    local bridge mac
    bridge=$(podman network inspect --format '{{.NetworkInterface}}' "${PROJECT}_default")
    mac=$(cat "/sys/class/net/$bridge/address")
    as_root ip link set dev "$bridge" address "$mac"
    echo "       the network's bridge $bridge keeps the address $mac"
}

# Every container resolves every service's name (ops/containers/replica.sh
# dns): aardvark-dns 1.4 drops queries while it reloads, on every container
# start and stop, so the checks start once the last start is behind it.
wait_dns() {
    local started=$SECONDS
    local record
    record=$(SHOP_REPLICA_PROJECT="$PROJECT" SHOP_REPLICA_COUNT="$REPLICAS" "$HERE/replica.sh" dns) ||
        die "the containers do not resolve each other's names"
    echo "       every container resolves every service's name ($((SECONDS - started)) s)"
    [[ -z "$record" ]] || echo "       ($record)"
}

# compose_up SERVICE...: `up -d` for those services (all when none), never
# without a time limit: podman-compose can wait for ever on a container that
# does not start.
compose_up() {
    compose up -d --no-build "$@" >>"$TMP_DIR/up.log" 2>&1 ||
        { grep -v '^WARNING:podman_compose:Ignored' "$TMP_DIR/up.log" | tail -n 30 >&2; die "podman-compose up $* failed"; }
}

# The address of a service's (first) container on the compose network,
# reachable from the host (Podman runs rootful).
address_of() {
    podman inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$(container_of "$1")"
}

# The order checker (backend/shop/tests/order_checker.rs, its ignored test
# against a shop it did not start: checker::External) through the balancer,
# reading the databases and the event stream at the containers' addresses.
# Its fault schedule kills one replica of every kind in turn, then one of
# each at once (ops/containers/replica.sh; SIGKILL), starts it again and
# waits until it is healthy; its shoppers go on until every kind has had its
# turn. Any invariant violation fails the run. The test binary is the debug
# one the test command's nextest step built (nothing compiles here then).
CHECKER_TEST=the_container_stack_keeps_every_invariant_while_replicas_are_killed
run_checker() {
    local runner
    if cargo nextest --version >/dev/null 2>&1; then
        runner=(cargo nextest run -p shop --test order_checker --no-capture --run-ignored only -E "test(=$CHECKER_TEST)")
    else
        runner=(cargo test -p shop --test order_checker -- --ignored --exact "$CHECKER_TEST" --nocapture)
    fi
    local database="postgres://shop:$POSTGRES_PASSWORD@$(address_of postgres):5432"
    SHOP_CHECKER_EXTERNAL_GATEWAY="$GATEWAY_URL" \
        SHOP_CHECKER_EXTERNAL_INVENTORY_DATABASE_URL="$database/inventory" \
        SHOP_CHECKER_EXTERNAL_ORDERS_DATABASE_URL="$database/orders" \
        SHOP_CHECKER_EXTERNAL_NATS_URL="nats://$(address_of nats):4222" \
        SHOP_CHECKER_EXTERNAL_MAKE_ADMIN="${SUDO:+$SUDO }env CONTAINERS_CONF=$CONTAINERS_CONF podman exec $(container_of users) shop make-admin" \
        SHOP_CHECKER_EXTERNAL_FAULTS="$ROOT/$HERE/replica.sh" \
        SHOP_CHECKER_EXTERNAL_FAULT_KINDS="$(IFS=,; echo "${SHOP_SERVICES[*]}"),all" \
        SHOP_REPLICA_PROJECT="$PROJECT" SHOP_REPLICA_COUNT="$REPLICAS" \
        SHOP_REPLICA_BACKENDS="$TMP_DIR/backends" SHOP_REPLICA_KILLS="$TMP_DIR/kills" \
        "${runner[@]}" >"$TMP_DIR/checker.log" 2>&1 ||
        { tail -n 60 "$TMP_DIR/checker.log" >&2; die "the order checker failed against the stack"; }
    sed -n '/^order checker against/,/^$/p' "$TMP_DIR/checker.log" | grep -v '^$' | sed 's/^/       /'
}

# Shoppers (ops/load.sh, LOAD_SECONDS) through the balancer and, alongside,
# the order checker with its fault schedule (run_checker): replicas of
# every shop process are killed and started again while both shop. Every
# failed request is counted by ops/load.sh, which fails on any.
LOAD_SECONDS=${SHOP_CONTAINERS_LOAD_SECONDS:-60}
load_under_faults() {
    local email="load-admin-$RANDOM$RANDOM@example.com" password="correct horse battery staple" status=0
    curl -fsS --max-time 10 -o /dev/null -H 'Accept: application/json' -H 'Content-Type: application/json' \
        --data "{\"name\":\"Load Admin\",\"email\":\"$email\",\"password\":\"$password\"}" \
        "$GATEWAY_URL/users/register" || die "could not register the load generator's admin"
    podman exec "$(container_of users)" shop make-admin "$email" >/dev/null || die "make-admin for the load failed"
    : >"$TMP_DIR/kills"
    SHOP_LOAD_VENV="$VENV" SHOP_LOAD_ADMIN_EMAIL="$email" SHOP_LOAD_ADMIN_PASSWORD="$password" \
        SHOP_LOAD_WAIT=0.2-1 ops/load.sh "$GATEWAY_URL" "$LOAD_SECONDS" 10 >"$TMP_DIR/load.log" 2>&1 &
    LOAD_PID=$!
    # Locust lists the catalogue as it starts; the checker's products, made
    # after, are the checker's alone.
    sleep 3
    local started=$SECONDS
    run_checker
    echo "       $(date -u +%T) the order checker is done ($((SECONDS - started)) s); killed: $(sed "s/^${PROJECT}_//" "$TMP_DIR/kills" | tr '\n' ' ')"
    wait_healthy 120 $((${#OTHERS[@]} + ${#SHOP_SERVICES[@]} * REPLICAS))
    gateway_backends >"$TMP_DIR/backends.new" && mv "$TMP_DIR/backends.new" "$TMP_DIR/backends"
    wait "$LOAD_PID" || status=$?
    LOAD_PID=""
    sed 's/^/       /' "$TMP_DIR/load.log"
    [[ $status -eq 0 ]] && return 0
    # What a client's retry absorbs, and only that: a request that was in
    # flight on a killed gateway, whose connection closed with no answer (at
    # most one per shopper, 10, each time a gateway was killed), and a 503
    # "try again in a moment" from a gateway whose call was in flight on a
    # killed replica of a service (at most 10 each time one was killed). An
    # HTTP error of any other kind, a time-out or anything else fails the run.
    python3 - "$TMP_DIR/load.log" "$TMP_DIR/kills" <<'PY'
import re, sys
DROPPED = r"(RemoteDisconnected|ConnectionResetError|ConnectionAbortedError)\("
UNAVAILABLE = r"HTTPError\('503 "
failures = re.findall(r"FAILURE x(\d+): (.*?): (.*)", open(sys.argv[1]).read())
killed = [line.strip() for line in open(sys.argv[2]) if line.strip()]
gateways = sum("_gateway_" in name for name in killed)
services = len(killed) - gateways
dropped = sum(int(n) for n, _, error in failures if re.match(DROPPED, error))
unavailable = sum(int(n) for n, _, error in failures if re.match(UNAVAILABLE, error))
others = [f"{name}: {error}" for _, name, error in failures if not re.match(f"{DROPPED}|{UNAVAILABLE}", error)]
if not failures or others or dropped > 10 * gateways or unavailable > 10 * services:
    sys.exit(f"       failures beyond what a client's retry absorbs ({gateways} gateway(s) and {services} other "
             f"replica(s) killed): {others or (dropped, unavailable)}")
print(f"       {dropped} request(s) in flight on the {gateways} killed gateway(s) lost their connection, {unavailable} "
      f"answered 503 while a call was in flight on one of {services} other killed replicas (a client's retry absorbs both);"
      " no other failure")
PY
}

# ------------------------------------------------------------ the run

echo "    the compose stack in Podman (${REPLICAS} replica(s) of every shop process)"

sub "tools: podman, runc, debootstrap, podman-compose"
ensure_tools
sub_done

sub "base image $BASE_IMAGE (debootstrap the first time)"
ensure_base_image
sub_done

sub "stand-in images (ops/containers/standins/)"
build_standins
sub_done

sub "the shop's image from ./Dockerfile (runtime stage, the built binary)"
shop_binary
build_shop_image
sub_done

# podman-compose with Podman < 4.6 ignores `condition: service_healthy` and
# starts everything at once: the shop's processes then exit (and are
# restarted) until PostgreSQL answers, and Podman 4.3 fails to start a
# container whose dependency is restarting ("depends on container ... not
# found in input list"). So the order compose.yaml asks for is kept here:
# what the shop uses first, healthy, then the shop.
OTHERS=(postgres redis nats mailpit prometheus tempo loki grafana)
sub "podman-compose up: ${OTHERS[*]}; every one healthy (health checks run by this script)"
start_stack
compose_up "${OTHERS[@]}"
wait_healthy 120 "${#OTHERS[@]}"
pin_bridge_mac
sub_done

sub "podman-compose up: the shop; every container healthy"
compose_up
wait_healthy 180 $((${#OTHERS[@]} + ${#SHOP_SERVICES[@]} * REPLICAS))
wait_dns
[[ $REPLICAS -eq 1 ]] || start_balancer
sub_done

sub "ops/smoke.sh against the published gateway; make-admin by podman exec in the users container"
SHOP_MAKE_ADMIN="${SUDO:+$SUDO }podman exec $(container_of users) shop make-admin" \
    ops/smoke.sh "$GATEWAY_URL" >"$TMP_DIR/smoke.log" 2>&1 || { tail -n 40 "$TMP_DIR/smoke.log" >&2; die "ops/smoke.sh failed"; }
echo "       $(grep -c -- ' -> ' "$TMP_DIR/smoke.log") requests answered as expected"
sub_done

sub "Prometheus targets, the checkout's trace in Tempo, its log lines in Loki (check_stack.py)"
gateways=""
[[ $REPLICAS -eq 1 ]] || gateways=$(gateway_backends | sed 's#^#http://#' | paste -sd, -)
python3 "$HERE/check_stack.py" --project "$PROJECT" --prometheus "$PROMETHEUS_URL" --gateway "$GATEWAY_URL" \
    --gateways "$gateways" --replicas "$REPLICAS"
sub_done

if [[ $REPLICAS -gt 1 ]]; then
    sub "ops/load.sh and the order checker through the balancer while replicas of every shop process are killed and started again"
    load_under_faults
    sub_done
fi

sub "memory use (podman stats --no-stream)"
podman stats --no-stream --format '{{.Name}} {{.MemUsage}}' $(containers) >"$TMP_DIR/stats.txt"
sed "s/^${PROJECT}_/       /" "$TMP_DIR/stats.txt"
python3 - "$TMP_DIR/stats.txt" <<'PY'
import re, sys
units = {"B": 1, "kB": 1e3, "KB": 1e3, "KiB": 1024, "MB": 1e6, "MiB": 1 << 20, "GB": 1e9, "GiB": 1 << 30}
total = 0
for line in open(sys.argv[1]):
    match = re.search(r"\s([\d.]+)\s*([kKMG]?i?B)\s*/", line)
    if match:
        total += float(match.group(1)) * units[match.group(2)]
print(f"       in all: {total / (1 << 20):.0f} MiB")
PY
sub_done

if [[ "${SHOP_CONTAINERS_KEEP:-}" == always ]]; then
    keep_note
    STACK_UP=""
    exit 0
fi

sub "podman-compose down -v leaves nothing behind"
COMPOSE_TIMEOUT=120 compose down -v -t 20 >"$TMP_DIR/down.log" 2>&1 ||
    { tail -n 20 "$TMP_DIR/down.log" >&2; die "podman-compose down -v failed"; }
left=$(leftovers)
if [[ -n "$left" ]]; then
    force_remove
    die "down -v left: $(tr '\n' ' ' <<<"$left")"
fi
STACK_UP=""
echo "       no container, pod, volume or network of $PROJECT left"
sub_done

echo "    times:"
printf '    %s\n' "${TIMES[@]}"
