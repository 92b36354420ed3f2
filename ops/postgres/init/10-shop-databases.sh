#!/usr/bin/env bash
# One database per service, made when the postgres container first starts on
# an empty volume (the image runs /docker-entrypoint-initdb.d once), so they
# exist before any service starts (the shop would otherwise create a missing
# one itself). Names come from the same variables the shop reads.
set -euo pipefail

for db in "${POSTGRES_DB_USERS:-users}" "${POSTGRES_DB_INVENTORY:-inventory}" "${POSTGRES_DB_ORDERS:-orders}"; do
    # format(%I) quotes the name; \gexec runs the CREATE only when it is missing.
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres --set db="$db" <<'SQL'
SELECT format('CREATE DATABASE %I', :'db')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')\gexec
SQL
done
