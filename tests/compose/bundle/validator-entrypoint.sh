#!/usr/bin/env bash
# Test-only: starts splice-sim as the `validator` service, from the environment the compose
# files set. It plays the role of the real validator app's config loading: the base file and
# every overlay only add environment variables (as the real ones do), and this script turns
# them into splice-sim flags, so overlays combine without repeating a `command:`.
#
#   SPLICE_SIM_PG_URL                          --pg-url (read by splice-sim itself)
#   SPLICE_SIM_MIGRATION_ID                    --migration-id (required, digits)
#   SPLICE_APP_VALIDATOR_PARTY_HINT            --party-hint
#   SPLICE_APP_VALIDATOR_PARTICIPANT_IDENTIFIER --participant-id (when not empty)
#   SPLICE_APP_VALIDATOR_SV_SPONSOR_ADDRESS    --sv-url (when not empty)
#   SPLICE_APP_VALIDATOR_AUTH_AUDIENCE         --audience
#   SPLICE_SIM_AUTH_SECRET                     HS256 secret (`unsafe` = the no-auth secret)
#   SPLICE_SIM_DUMP_PATH                       where a migration dump is read from
#   SPLICE_SIM_RESTORE_FROM_MIGRATION_DUMP     set by compose-migrate.yaml: --migrating
#   SPLICE_SIM_IDENTITIES_DUMP_IMPORT          set by compose-restore-from-id.yaml:
#   SPLICE_SIM_NEW_PARTICIPANT_IDENTIFIER        --identities-dump FILE --participant-id ID
#   SPLICE_SIM_LISTEN_PORT                     API port in the container (default 5003)
#   SPLICE_SIM_EXTRA_ARGS                      more flags, word-split (fault knobs, seed, ...)
set -Eeuo pipefail

die() {
    printf 'validator-entrypoint: error: %s\n' "$*" >&2
    exit 1
}

migration_id="${SPLICE_SIM_MIGRATION_ID:-}"
[[ "$migration_id" =~ ^[0-9]+$ ]] || die "MIGRATION_ID must be digits, got '$migration_id'"

args=(--listen "0.0.0.0:${SPLICE_SIM_LISTEN_PORT:-5003}" --migration-id "$migration_id")
[ -z "${SPLICE_APP_VALIDATOR_PARTY_HINT:-}" ] ||
    args+=(--party-hint "$SPLICE_APP_VALIDATOR_PARTY_HINT")
[ -z "${SPLICE_APP_VALIDATOR_SV_SPONSOR_ADDRESS:-}" ] ||
    args+=(--sv-url "$SPLICE_APP_VALIDATOR_SV_SPONSOR_ADDRESS")
[ -z "${SPLICE_APP_VALIDATOR_AUTH_AUDIENCE:-}" ] ||
    args+=(--audience "$SPLICE_APP_VALIDATOR_AUTH_AUDIENCE")

secret="${SPLICE_SIM_AUTH_SECRET:-unsafe}"
if [ "$secret" != unsafe ]; then
    secret_file="$(mktemp)"
    printf '%s\n' "$secret" >"$secret_file"
    args+=(--auth-secret-file "$secret_file")
fi

participant_id="${SPLICE_APP_VALIDATOR_PARTICIPANT_IDENTIFIER:-}"
if [ -n "${SPLICE_SIM_IDENTITIES_DUMP_IMPORT:-}" ]; then
    participant_id="${SPLICE_SIM_NEW_PARTICIPANT_IDENTIFIER:-$participant_id}"
    [ -n "$participant_id" ] || die "an identities dump import needs a new participant id"
    [ -r "$SPLICE_SIM_IDENTITIES_DUMP_IMPORT" ] ||
        die "cannot read the identities dump $SPLICE_SIM_IDENTITIES_DUMP_IMPORT as uid $(id -u)" \
            "(the file must be readable by uid 1001)"
    args+=(--identities-dump "$SPLICE_SIM_IDENTITIES_DUMP_IMPORT")
fi
[ -z "$participant_id" ] || args+=(--participant-id "$participant_id")

if [ -n "${SPLICE_SIM_RESTORE_FROM_MIGRATION_DUMP:-}" ]; then
    args+=(--migrating --dump-path "$SPLICE_SIM_RESTORE_FROM_MIGRATION_DUMP")
elif [ -n "${SPLICE_SIM_DUMP_PATH:-}" ]; then
    args+=(--dump-path "$SPLICE_SIM_DUMP_PATH")
fi

# shellcheck disable=SC2206 # word splitting is the point
args+=(${SPLICE_SIM_EXTRA_ARGS:-})

printf 'validator-entrypoint: splice-sim %s\n' "${args[*]}" >&2
exec splice-sim "${args[@]}"
