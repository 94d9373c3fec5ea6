#!/usr/bin/env bash
# Test double of the Splice bundle's stop.sh: `docker compose down` — removes the project's
# containers and network, keeps its volumes (postgres-splice, domain-upgrade-dump). Works from
# any directory. Environment: COMPOSE_PROJECT_NAME (default: compose.yaml's `name:`).
set -Eeuo pipefail

die() {
    printf 'stop.sh: error: %s\n' "$*" >&2
    exit 1
}
while getopts ':h' opt; do
    case "$opt" in
    h)
        sed -n '2,4p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
        exit 0
        ;;
    *) die "unknown option -$OPTARG" ;;
    esac
done
shift $((OPTIND - 1))
[ "$#" -eq 0 ] || die "unexpected argument(s): $*"

cd "$(dirname "$(realpath "${BASH_SOURCE[0]}")")"
[ -z "${COMPOSE_PROJECT_NAME:-}" ] || export COMPOSE_PROJECT_NAME
# `down` does not use these, but compose interpolates the whole file: avoid "not set" noise.
export MIGRATION_ID="${MIGRATION_ID:-0}" IMAGE_TAG="${IMAGE_TAG:-sim}"
for v in SPONSOR_SV_ADDRESS ONBOARDING_SECRET SCAN_ADDRESS SPLICE_APP_UI_NETWORK_NAME \
    SPLICE_APP_UI_NETWORK_FAVICON_URL SPLICE_APP_UI_AMULET_NAME SPLICE_APP_UI_AMULET_NAME_ACRONYM \
    SPLICE_APP_UI_NAME_SERVICE_NAME SPLICE_APP_UI_NAME_SERVICE_NAME_ACRONYM; do
    export "$v=${!v:-}"
done

docker compose version >/dev/null 2>&1 ||
    die "'docker compose' (Compose v2) is not available: tests/install-compose-v2.sh installs it"
files=(-f compose.yaml)
[ ! -f compose.override.yaml ] || files+=(-f compose.override.yaml)
exec docker compose "${files[@]}" down
