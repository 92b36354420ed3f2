#!/bin/sh
# The official image turns protected mode off for a server started without a
# configuration file; Debian's binary keeps it on, which would refuse every
# client from another container.
set -eu
if [ "${1:-}" = redis-server ]; then
    shift
    exec redis-server --protected-mode no "$@"
fi
exec "$@"
