#!/usr/bin/env bash
# Installs (if missing), starts and prepares a local PostgreSQL for baton-store's tests.
# Idempotent: safe to run again on a machine where it already ran. Needs root (CI runs as root).
# Prints the URL to export, e.g.:
#   export BATON_TEST_POSTGRES_URL="$(bash .ci/postgres.sh | tail -n 1)"
# All progress goes to stderr; stdout is only that URL.
set -euo pipefail

PG_PORT="${PG_PORT:-5432}"
PG_ROLE=baton
PG_PASSWORD=baton
PG_DB=baton_test

log() { echo "postgres.sh: $*" >&2; }

if ! command -v pg_lsclusters >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    log "installing postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q postgresql >&2
fi

# The newest installed major version (15 on Debian 12).
PG_VERSION="${PG_VERSION:-$(ls /usr/lib/postgresql | sort -V | tail -n 1)}"

if ! pg_lsclusters --no-header | awk '{print $2}' | grep -qx main; then
    log "creating cluster ${PG_VERSION}/main on port ${PG_PORT}"
    pg_createcluster "${PG_VERSION}" main --port "${PG_PORT}" >&2
fi

# There is no systemd here: start the cluster through the init script (a no-op if it runs).
service postgresql start >&2

log "waiting for the server on 127.0.0.1:${PG_PORT}"
for _ in $(seq 1 60); do
    if pg_isready -q -h 127.0.0.1 -p "${PG_PORT}"; then
        break
    fi
    sleep 0.5
done
if ! pg_isready -h 127.0.0.1 -p "${PG_PORT}" >&2; then
    log "PostgreSQL did not come up on 127.0.0.1:${PG_PORT}"
    exit 1
fi

# Run psql from a folder the postgres user can read.
cd /tmp
as_postgres() { su postgres -c "$1"; }

if [ "$(as_postgres "psql -p ${PG_PORT} -tAc \"SELECT 1 FROM pg_roles WHERE rolname = '${PG_ROLE}'\"")" != 1 ]; then
    log "creating role ${PG_ROLE}"
    as_postgres "psql -p ${PG_PORT} -q -c \"CREATE ROLE ${PG_ROLE} LOGIN PASSWORD '${PG_PASSWORD}' CREATEDB\"" >&2
fi

if [ "$(as_postgres "psql -p ${PG_PORT} -tAc \"SELECT 1 FROM pg_database WHERE datname = '${PG_DB}'\"")" != 1 ]; then
    log "creating database ${PG_DB}"
    as_postgres "createdb -p ${PG_PORT} -O ${PG_ROLE} ${PG_DB}" >&2
fi

log "ready"
echo "postgres://${PG_ROLE}:${PG_PASSWORD}@127.0.0.1:${PG_PORT}/${PG_DB}"
