#!/usr/bin/env bash
# Test stand-in for the Splice bundle's postgres-entrypoint.sh (own code, same contract):
# starts the server through the image's docker-entrypoint.sh and, once it accepts TCP
# connections, creates every database named by a CREATE_DATABASE_* variable that does not
# exist yet — on a fresh volume (empty `validator` and `participant-<id>` databases, which
# the runbook's `psql < dump` restore needs) and also on later starts (a new migration id
# gets its `participant-<id>` database on the existing volume).
#
# The script stays the container's main process: it forwards SIGTERM/SIGINT to the server
# as SIGINT (fast shutdown) and exits with the server's status.
set -Eeuo pipefail

log() { printf 'postgres-entrypoint: %s\n' "$*" >&2; }

docker-entrypoint.sh "$@" &
server=$!
trap 'kill -INT "$server" 2>/dev/null || true' TERM INT

# The official-style entrypoint initializes on a socket-only temporary server: wait for TCP,
# which only the real server listens on. 127.0.0.1 logins are trusted inside the container.
export PGHOST=127.0.0.1 PGPORT="${PGPORT:-5432}" PGUSER="${POSTGRES_USER:-postgres}"
export PGPASSWORD="${POSTGRES_PASSWORD:-}"

create_databases() {
    local var db
    for var in $(compgen -e | grep '^CREATE_DATABASE_' || true); do
        db="${!var}"
        [ -n "$db" ] || continue
        # \gexec runs the CREATE only when the database is missing.
        psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --dbname postgres --set db="$db" <<'SQL' || return 1
SELECT format('CREATE DATABASE %I', :'db')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
    done
}

created=false
while kill -0 "$server" 2>/dev/null; do
    if pg_isready -q -d postgres 2>/dev/null; then
        # A concurrent CREATE by a client can fail ours with 'already exists': retry the pass.
        if create_databases; then
            log "databases present: $(compgen -e | grep '^CREATE_DATABASE_' | while read -r v; do printf '%s ' "${!v}"; done)"
            created=true
            break
        fi
    fi
    sleep 0.2
done
"$created" || log "the server exited before the databases could be created"

# `wait` returns early when a trapped signal arrives: wait until the server is really gone.
while :; do
    wait "$server" && status=0 || status=$?
    kill -0 "$server" 2>/dev/null || break
done
exit "$status"
