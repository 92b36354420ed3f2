#!/usr/bin/env bash
# The order checker's faults in the container test's run with replicas
# (ops/containers/test.sh --replicas N sets the environment and names this
# program in SHOP_CHECKER_EXTERNAL_FAULTS):
#
#   replica.sh kill KIND    SIGKILL (a crash, not a drain) one replica of KIND,
#                           picked at random; prints the container's name.
#                           KIND: users, inventory, orders, notifications,
#                           gateway, or all (one replica of each at once)
#   replica.sh start KIND   starts every replica of KIND that is not running
#                           and returns once each is healthy and every
#                           container of the project resolves every service
#                           name again (`dns` below); a gateway's new address
#                           goes into the balancer's backends file
#   replica.sh dns          returns once every running container of the
#                           project resolves every compose service's name
#                           with its own resolver (`getent ahostsv4` inside
#                           it, through aardvark-dns), at most 120 s
#
# Environment (from test.sh): SHOP_REPLICA_PROJECT, SHOP_REPLICA_COUNT,
# SHOP_REPLICA_BACKENDS (the balancer's file), SHOP_REPLICA_KILLS (a line
# per killed container is appended), CONTAINERS_CONF; Podman runs rootful:
# as root, or through password-less sudo.
set -euo pipefail

ACTION=${1:?kill, start or dns}
KIND=${2:-}
PROJECT=${SHOP_REPLICA_PROJECT:?}
COUNT=${SHOP_REPLICA_COUNT:?}
SHOP_SERVICES=(users inventory orders notifications gateway)

SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo -n"
podman() { $SUDO env "CONTAINERS_CONF=${CONTAINERS_CONF:?}" podman "$@"; }

case $KIND in
    all) KINDS=("${SHOP_SERVICES[@]}") ;;
    users | inventory | orders | notifications | gateway) KINDS=("$KIND") ;;
    *) [[ $ACTION == dns ]] || { echo "replica.sh: no kind '$KIND'" >&2; exit 2; } ;;
esac

# Every running container of the project resolves every service's name.
# Podman 4.3's aardvark-dns (1.4) drops queries while it reloads, which it
# does on every container start and stop on the network (it closes and opens
# its sockets; fixed in aardvark-dns 1.11): what starts right after a start
# or a kill may find no name for a moment.
wait_dns() {
    local deadline=$((SECONDS + 120)) name names dir missing first="" rounds=0
    names=$(podman ps -a --filter "label=io.podman.compose.project=$PROJECT" \
        --format '{{index .Labels "com.docker.compose.service"}}' | sort -u | tr '\n' ' ')
    dir=$(mktemp -d "${TMPDIR:-/tmp}/shop-replica.XXXXXX")
    while true; do
        # Every container at once; a lookup that times out takes its 5 s.
        for name in $(podman ps --filter "label=io.podman.compose.project=$PROJECT" --format '{{.Names}}'); do
            podman exec "$name" sh -c 'for n; do getent ahostsv4 "$n" >/dev/null || { echo "$n"; exit 1; }; done' \
                sh $names >"$dir/$name" 2>&1 || echo "$name: $(head -c 200 "$dir/$name")" >"$dir/$name.missing" &
        done
        wait
        missing=$(cat "$dir"/*.missing 2>/dev/null | tr '\n' ' ' || true)
        rm -f "$dir"/*
        rounds=$((rounds + 1))
        if [[ -z "$missing" ]]; then
            rm -rf "$dir"
            # What did not resolve at first, for the record.
            [[ -z "$first" ]] || echo "names resolved everywhere after $rounds tries; at first not: ${first:0:300}"
            return 0
        fi
        [[ -n "$first" ]] || first=$missing
        [[ -z "${SHOP_REPLICA_DEBUG:-}" ]] || echo "$(date -u +%T) unresolved: $missing" >&2
        if [[ $SECONDS -ge $deadline ]]; then
            rm -rf "$dir"
            echo "replica.sh: names not resolved after 120 s: $missing" >&2
            return 1
        fi
        sleep 0.5
    done
}

case $ACTION in
    kill)
        killed=()
        for kind in "${KINDS[@]}"; do
            name="${PROJECT}_${kind}_$((RANDOM % COUNT + 1))"
            podman kill "$name" >/dev/null
            killed+=("$name")
            [[ -z "${SHOP_REPLICA_KILLS:-}" ]] || echo "$name" >>"$SHOP_REPLICA_KILLS"
        done
        echo "${killed[*]}"
        ;;
    start)
        started=$SECONDS
        deadline=$((SECONDS + 120))
        for kind in "${KINDS[@]}"; do
            for n in $(seq "$COUNT"); do
                name="${PROJECT}_${kind}_$n"
                # The restart policy may have started it already.
                [[ "$(podman inspect --format '{{.State.Running}}' "$name")" == true ]] || podman start "$name" >/dev/null
                until podman healthcheck run "$name" >/dev/null 2>&1; do
                    if [[ $SECONDS -ge $deadline ]]; then
                        echo "replica.sh: $name not healthy 120 s after its start" >&2
                        podman logs --tail 20 "$name" >&2 || true
                        exit 1
                    fi
                    sleep 0.5
                done
            done
        done
        healthy=$((SECONDS - started))
        # The balancer sends to a gateway's new address at once.
        if [[ -n "${SHOP_REPLICA_BACKENDS:-}" && " ${KINDS[*]} " == *" gateway "* ]]; then
            for n in $(seq "$COUNT"); do
                echo "$(podman inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' \
                    "${PROJECT}_gateway_$n"):8080"
            done >"$SHOP_REPLICA_BACKENDS.new"
            mv "$SHOP_REPLICA_BACKENDS.new" "$SHOP_REPLICA_BACKENDS"
        fi
        dns=$(wait_dns)
        echo "healthy after ${healthy} s, every name resolved after $((SECONDS - started)) s${dns:+; $dns}"
        ;;
    dns) wait_dns ;;
    *) echo "replica.sh: kill, start or dns, not $ACTION" >&2; exit 2 ;;
esac
