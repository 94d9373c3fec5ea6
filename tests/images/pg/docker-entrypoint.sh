#!/usr/bin/env bash
# Entrypoint of the splice-dr-test/pg image. It re-implements (it is not a copy) the part of
# the official postgres image's entrypoint contract that the Splice compose bundle relies on:
#
#   * `docker-entrypoint.sh postgres [-c k=v ...]` (or only `-c ...`): when $PGDATA
#     (default /var/lib/postgresql/data) holds no cluster yet, initdb it with $POSTGRES_USER
#     (default postgres) as superuser and $POSTGRES_PASSWORD, listen on '*', accept password
#     logins (POSTGRES_HOST_AUTH_METHOD, default scram-sha-256) from any host, create
#     $POSTGRES_DB (default $POSTGRES_USER) unless it is `postgres`, run
#     /docker-entrypoint-initdb.d/*.sh|*.sql|*.sql.gz on a socket-only temporary server,
#     then exec the command. Inside the container, local (socket) and 127.0.0.1 logins are
#     trusted, as in the official image (`docker exec ... psql -U cnadmin` needs no password).
#   * Started as root, it fixes the ownership/mode of $PGDATA and the socket directory, then
#     re-runs itself as `postgres`. Started as `postgres` (compose `user: "postgres"`) it
#     does the same work without the chown.
#   * Any other command is exec'd unchanged, as the current user.
set -Eeuo pipefail

log() { printf 'docker-entrypoint: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA
SOCKET_DIR=/var/run/postgresql

if [ "$#" -eq 0 ] || [ "${1:0:1}" = '-' ]; then
    set -- postgres "$@"
fi

# Only a server start initializes; `postgres --version` and friends pass straight through.
wants_server() {
    [ "$1" = postgres ] || return 1
    shift
    local arg
    for arg; do
        case "$arg" in
        -V | --version | --help | '-?' | --describe-config | -C) return 1 ;;
        esac
    done
    return 0
}

if ! wants_server "$@"; then
    exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" "$SOCKET_DIR"
    find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
    chmod 0700 "$PGDATA"
    chown postgres:postgres "$SOCKET_DIR"
    chmod 3777 "$SOCKET_DIR"
    exec setpriv --reuid=postgres --regid=postgres --init-groups -- "${BASH_SOURCE[0]}" "$@"
fi

# Not root from here on (normally `postgres`).
mkdir -p "$PGDATA" 2>/dev/null || die "cannot create PGDATA $PGDATA as uid $(id -u)"
chmod 0700 "$PGDATA" 2>/dev/null || true

if [ -s "$PGDATA/PG_VERSION" ]; then
    exec "$@"
fi

# ---- first start: initialize the cluster -------------------------------------------------
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
POSTGRES_PASSWORD="${POSTGRES_PASSWORD:-}"
if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
    die "the database is uninitialized and POSTGRES_PASSWORD is empty" \
        "(set it, or POSTGRES_HOST_AUTH_METHOD=trust to allow password-less logins)"
fi
case "$POSTGRES_HOST_AUTH_METHOD" in
scram-sha-256 | md5 | password | trust) ;;
*) die "unsupported POSTGRES_HOST_AUTH_METHOD '$POSTGRES_HOST_AUTH_METHOD'" ;;
esac

log "initializing a new cluster in $PGDATA (superuser '$POSTGRES_USER')"
init_args=(--username="$POSTGRES_USER" --encoding=UTF8 --locale=C.UTF-8
    --auth-local=trust --auth-host=trust)
pwfile=
if [ -n "$POSTGRES_PASSWORD" ]; then
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    init_args+=(--pwfile="$pwfile")
fi
# shellcheck disable=SC2206 # word splitting of the extra args is intended
init_args+=(${POSTGRES_INITDB_ARGS:-})
initdb "${init_args[@]}" >/dev/null
[ -z "$pwfile" ] || rm -f "$pwfile"

# md5 logins need md5-hashed passwords; scram-sha-256 (PG 15's default) serves the rest.
if [ "$POSTGRES_HOST_AUTH_METHOD" = md5 ] && [ -n "$POSTGRES_PASSWORD" ]; then
    echo "password_encryption = md5" >>"$PGDATA/postgresql.auto.conf"
fi
printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
printf '\n# any host, password login (docker-entrypoint.sh)\nhost all all all %s\n' \
    "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"

psql_init() {
    psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "$POSTGRES_USER" --no-password "$@"
}

# A temporary server on the socket only, so nobody connects over TCP before we are done.
pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p ${PGPORT:-5432}" -w -t 120 start >/dev/null
if [ -n "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" = md5 ]; then
    # Re-store the password under md5 now that password_encryption says so.
    psql_init --dbname postgres --set u="$POSTGRES_USER" --set p="$POSTGRES_PASSWORD" \
        <<<"ALTER ROLE :\"u\" PASSWORD :'p';"
fi
if [ "$POSTGRES_DB" != postgres ]; then
    log "creating database '$POSTGRES_DB'"
    psql_init --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
fi

export PGUSER="$POSTGRES_USER" PGDATABASE="$POSTGRES_DB"
for f in /docker-entrypoint-initdb.d/*; do
    [ -e "$f" ] || continue
    case "$f" in
    *.sh)
        log "running $f"
        if [ -x "$f" ]; then "$f"; else
            # shellcheck disable=SC1090
            . "$f"
        fi
        ;;
    *.sql)
        log "running $f"
        psql_init --dbname "$POSTGRES_DB" -f "$f"
        ;;
    *.sql.gz)
        log "running $f"
        gzip -dc "$f" | psql_init --dbname "$POSTGRES_DB"
        ;;
    *) log "ignoring $f" ;;
    esac
done
unset PGUSER PGDATABASE

pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
log "initialization done; starting: $*"
exec "$@"
