#!/usr/bin/env bash
# Test double of the Splice bundle's start.sh: accepts the real flags, validates them, exports
# what the compose files read and runs
#   docker compose -p PROJECT -f compose.yaml [overlays] up -d
# (the v2 plugin when present, else docker-compose v1). Works from any directory.
#
#   -s URL   sponsor SV URL (required); tests: http://host.docker.internal:PORT
#   -o SECRET onboarding secret (required, may be "")
#   -p HINT  party hint (required); also the default participant id
#   -P ID    participant id (required with -i; pass the same -P on every later start)
#   -m N     migration id (required, digits)
#   -M       migrating: import /domain-upgrade-dump/domain_migration_dump.json (compose-migrate.yaml)
#   -i FILE  identities dump to re-onboard from (needs -P; compose-restore-from-id.yaml)
#   -w       wait until every service with a healthcheck is healthy (up to 600 s)
#   -a       enable auth (otherwise compose-disable-auth.yaml: tokens signed with `unsafe`)
#   -c URL / -C URL  scan URL · -q URL sequencer · -n NET docker network: accepted, recorded
#   -b / -l  trust a single SV / local SV: accepted, no effect here
#
# Environment: COMPOSE_PROJECT_NAME (default splice-validator), VALIDATOR_HOST_PORT (default
# 5003), START_WAIT_TIMEOUT (seconds for -w, default 600), anything from .env.
set -Eeuo pipefail

usage() {
    sed -n '2,/^set -Eeuo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
}
die() {
    printf 'start.sh: error: %s\n' "$*" >&2
    exit 1
}

sponsor='' secret='' secret_set=false party_hint='' participant_id='' migration_id=''
migrating=false identities='' wait=false auth=false
scan='' host_scan='' sequencer='' network=''

while getopts ':s:o:p:P:m:Mi:wac:C:q:n:blh' opt; do
    case "$opt" in
    s) sponsor="$OPTARG" ;;
    o) secret="$OPTARG" secret_set=true ;;
    p) party_hint="$OPTARG" ;;
    P) participant_id="$OPTARG" ;;
    m) migration_id="$OPTARG" ;;
    M) migrating=true ;;
    i) identities="$OPTARG" ;;
    w) wait=true ;;
    a) auth=true ;;
    c) scan="$OPTARG" ;;
    C) host_scan="$OPTARG" ;;
    q) sequencer="$OPTARG" ;;
    n) network="$OPTARG" ;;
    b | l) ;; # trust a single SV / local SV: accepted, no effect on the test bundle
    h)
        usage
        exit 0
        ;;
    :) die "option -$OPTARG needs a value (see -h)" ;;
    *) die "unknown option -$OPTARG (see -h)" ;;
    esac
done
shift $((OPTIND - 1))
[ "$#" -eq 0 ] || die "unexpected argument(s): $* (see -h)"

[ -n "$sponsor" ] || die "the sponsor SV URL is required: -s URL"
[[ "$sponsor" =~ ^https?://[^/]+ ]] || die "the sponsor SV URL must be http(s)://HOST[:PORT], got '$sponsor'"
"$secret_set" || die "the onboarding secret is required: -o SECRET (-o \"\" when not needed)"
[ -n "$party_hint" ] || die "the party hint is required: -p HINT"
[[ "$party_hint" =~ ^[A-Za-z0-9_-]+$ ]] || die "the party hint may hold only letters, digits, '-' and '_', got '$party_hint'"
[ -n "$migration_id" ] || die "the migration id is required: -m N"
[[ "$migration_id" =~ ^[0-9]+$ ]] || die "the migration id must be digits, got '$migration_id'"
if [ -n "$identities" ]; then
    [ -n "$participant_id" ] || die "-i (identities dump) needs a new participant id: -P ID"
    [ -f "$identities" ] || die "identities dump '$identities' is not a file"
    [ -r "$identities" ] || die "identities dump '$identities' is not readable"
    identities="$(realpath "$identities")" # before the cd below: relative to the caller
fi
! { "$migrating" && [ -n "$identities" ]; } || die "-M (migrating) and -i (identities dump) cannot be combined"

cd "$(dirname "$(realpath "${BASH_SOURCE[0]}")")"

project="${COMPOSE_PROJECT_NAME:-splice-validator}"
export COMPOSE_PROJECT_NAME="$project"
export SPONSOR_SV_ADDRESS="$sponsor" ONBOARDING_SECRET="$secret" PARTY_HINT="$party_hint"
export PARTICIPANT_IDENTIFIER="${participant_id:-$party_hint}"
export MIGRATION_ID="$migration_id"
export SCAN_ADDRESS="${scan:-${host_scan:-}}" SEQUENCER_ADDRESS="$sequencer"
[ -z "$network" ] || printf 'start.sh: note: -n %s is accepted but the test bundle uses its own network\n' "$network" >&2

files=(-f compose.yaml)
"$migrating" && files+=(-f compose-migrate.yaml)
if [ -n "$identities" ]; then
    export VALIDATOR_PARTICIPANT_IDENTITIES_DUMP="$identities"
    export VALIDATOR_NEW_PARTICIPANT_IDENTIFIER="$participant_id"
    files+=(-f compose-restore-from-id.yaml)
fi
"$auth" || files+=(-f compose-disable-auth.yaml)

if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null; then
    compose=(docker-compose)
else
    die "neither 'docker compose' nor 'docker-compose' is available"
fi

"${compose[@]}" -p "$project" "${files[@]}" up -d

"$wait" || exit 0

# -w: every container of the project that has a healthcheck must report healthy.
timeout="${START_WAIT_TIMEOUT:-600}"
start=$SECONDS
printf 'start.sh: waiting up to %s s for the services of %s to be healthy\n' "$timeout" "$project" >&2
while :; do
    mapfile -t ids < <(docker ps -aq --filter "label=com.docker.compose.project=$project")
    [ "${#ids[@]}" -gt 0 ] || die "no containers found for project $project"
    states="$(docker inspect --format \
        '{{index .Config.Labels "com.docker.compose.service"}} {{if .State.Health}}{{.State.Health.Status}}{{else}}-{{end}} {{.State.Status}}' \
        "${ids[@]}")"
    pending="$(awk '$2 != "-" && $2 != "healthy" { print $1 " (" $2 ", " $3 ")" }' <<<"$states")"
    if [ -z "$pending" ]; then
        printf 'start.sh: all services healthy after %s s\n' "$((SECONDS - start))" >&2
        exit 0
    fi
    if [ $((SECONDS - start)) -ge "$timeout" ]; then
        printf 'start.sh: error: not healthy after %s s: %s\n' "$timeout" "$(tr '\n' ' ' <<<"$pending")" >&2
        while read -r svc _; do
            printf -- '--- last log lines of %s ---\n' "$svc" >&2
            "${compose[@]}" -p "$project" "${files[@]}" logs --no-color --tail 20 "$svc" >&2 || true
        done <<<"$pending"
        exit 1
    fi
    sleep 1
done
