#!/usr/bin/env bash
# Test double of the Splice bundle's start.sh (own code, same flags and behaviour as the
# release's script, see /work/shared/splice/README.md): validates the flags, exports what the
# real compose files read and runs
#   docker compose -f compose.yaml [overlays] -f compose.override.yaml up -d
# with the real compose.yaml and overlays of the bundle directory (tests/compose/assemble.sh)
# plus the test images (compose.override.yaml). Works from any directory. Needs Docker
# Compose v2: the real compose.yaml's top-level `name:` is refused by v1.
#
#   -s URL   sponsor SV URL (required); tests: http://<docker0 gateway>:PORT
#   -o SECRET onboarding secret (required, may be "")
#   -p HINT  party hint (required); also the default participant id
#   -P ID    participant id (required with -i; pass the same -P on every later start)
#   -m N     migration id (required, digits)
#   -M       migrating: the validator imports /domain-upgrade-dump/domain_migration_dump.json
#            (compose-migrate.yaml)
#   -i FILE  identities dump to re-onboard from (needs -P; compose-restore-from-id.yaml)
#   -w       wait until the containers run and every healthcheck of the bundle's first-start
#            path passes (postgres-splice), up to START_WAIT_TIMEOUT (600 s)
#   -a       enable auth (otherwise compose-disable-auth.yaml: tokens signed with `unsafe`)
#   -c URL / -C URL  scan URL · -q URL sequencer · -n NET docker network (DOCKER_NETWORK)
#   -b / -l  trust a single SV / local SV: accepted, no effect here
#
# Environment: COMPOSE_PROJECT_NAME (default: the compose file's `name:`, splice-validator),
# START_WAIT_TIMEOUT (seconds for -w, default 600), IMAGE_TAG (default `sim`), anything
# from .env (the bundle's env.defaults).
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

[ -z "${COMPOSE_PROJECT_NAME:-}" ] || export COMPOSE_PROJECT_NAME
project="${COMPOSE_PROJECT_NAME:-splice-validator}"
export SPONSOR_SV_ADDRESS="$sponsor" ONBOARDING_SECRET="$secret" PARTY_HINT="$party_hint"
export PARTICIPANT_IDENTIFIER="${participant_id:-$party_hint}"
export MIGRATION_ID="$migration_id"
export SCAN_ADDRESS="${scan:-${host_scan:-}}" SEQUENCER_ADDRESS="$sequencer"
export IMAGE_TAG="${IMAGE_TAG:-sim}"
[ -z "$network" ] || export DOCKER_NETWORK="$network"
# The UI settings the release's script sets per network; the UIs are idle stand-ins here.
for v in SPLICE_APP_UI_NETWORK_NAME SPLICE_APP_UI_NETWORK_FAVICON_URL SPLICE_APP_UI_AMULET_NAME \
    SPLICE_APP_UI_AMULET_NAME_ACRONYM SPLICE_APP_UI_NAME_SERVICE_NAME \
    SPLICE_APP_UI_NAME_SERVICE_NAME_ACRONYM; do
    export "$v=${!v:-}"
done

files=(-f compose.yaml)
"$migrating" && files+=(-f compose-migrate.yaml)
if [ -n "$identities" ]; then
    export VALIDATOR_PARTICIPANT_IDENTITIES_DUMP="$identities"
    export VALIDATOR_NEW_PARTICIPANT_IDENTIFIER="$participant_id"
    files+=(-f compose-restore-from-id.yaml)
fi
"$auth" || files+=(-f compose-disable-auth.yaml)
[ ! -f compose.override.yaml ] || files+=(-f compose.override.yaml)

docker compose version >/dev/null 2>&1 ||
    die "'docker compose' (Compose v2) is not available: tests/install-compose-v2.sh installs it"
compose=(docker compose)

"${compose[@]}" "${files[@]}" up -d

"$wait" || exit 0

# -w: every container of the project runs (one-shot containers may have exited 0) and
# postgres-splice's healthcheck passes — the only application container of the real bundle
# with one besides nginx, whose first check comes only after 30 s. Whether the validator and
# participant answer is for the caller to ask (readyz, gRPC health): the real bundle gives
# them no healthcheck.
timeout="${START_WAIT_TIMEOUT:-600}"
start=$SECONDS
printf 'start.sh: waiting up to %s s for the services of %s\n' "$timeout" "$project" >&2
while :; do
    mapfile -t ids < <(docker ps -aq --filter "label=com.docker.compose.project=$project")
    [ "${#ids[@]}" -gt 0 ] || die "no containers found for project $project"
    states="$(docker inspect --format \
        '{{index .Config.Labels "com.docker.compose.service"}} {{if .State.Health}}{{.State.Health.Status}}{{else}}-{{end}} {{.State.Status}} {{.State.ExitCode}}' \
        "${ids[@]}")"
    pending="$(awk '($1 == "postgres-splice" && $2 != "healthy") || ($3 != "running" && !($3 == "exited" && $4 == 0)) { print $1 " (" $2 ", " $3 ")" }' <<<"$states")"
    if [ -z "$pending" ]; then
        printf 'start.sh: the services run after %s s\n' "$((SECONDS - start))" >&2
        exit 0
    fi
    if [ $((SECONDS - start)) -ge "$timeout" ]; then
        printf 'start.sh: error: not up after %s s: %s\n' "$timeout" "$(tr '\n' ' ' <<<"$pending")" >&2
        while read -r svc _; do
            printf -- '--- last log lines of %s ---\n' "$svc" >&2
            "${compose[@]}" "${files[@]}" logs --no-color --tail 20 "$svc" >&2 || true
        done <<<"$pending"
        exit 1
    fi
    sleep 1
done
