#!/usr/bin/env bash
# Test double of the Splice bundle's stop.sh: `docker compose -p PROJECT down` — removes the
# project's containers and network, keeps its volumes (postgres-splice, domain-upgrade-dump).
# Works from any directory. Environment: COMPOSE_PROJECT_NAME (default splice-validator).
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
project="${COMPOSE_PROJECT_NAME:-splice-validator}"
# `down` does not use these, but compose interpolates the whole file: avoid "not set" noise.
export MIGRATION_ID="${MIGRATION_ID:-0}" SPONSOR_SV_ADDRESS="${SPONSOR_SV_ADDRESS:-}"
export ONBOARDING_SECRET="${ONBOARDING_SECRET:-}" SCAN_ADDRESS="${SCAN_ADDRESS:-}"

if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null; then
    compose=(docker-compose)
else
    die "neither 'docker compose' nor 'docker-compose' is available"
fi
exec "${compose[@]}" -p "$project" -f compose.yaml down
