#!/usr/bin/env bash
# Smoke test of the docker-compose test environment (tests/compose/README.md):
#   build the images → assemble the real Splice bundle with the stand-ins (assemble.sh) →
#   start a simulated SV on the host → start.sh -w → the validator API answers through the
#   bundle's nginx as http://wallet.localhost/api/validator (port 80) → stop.sh → start.sh
#   again on the same volumes (same party, start=restarted) → stop.sh → remove the volumes,
#   stop the SV, drop its database.
# Exits non-zero on the first failure; cleans up everything it created in any case.
#
# Env: SPLICE_SIM_BIN (else `cargo build -p splice-sim` into CARGO_TARGET_DIR, default
# /var/tmp/splice-dr-target), SPLICE_DR_TEST_PG_URL (host Postgres for the SV; default the
# test role of tests/pg-setup.sh), KEEP=1 to leave the project running for a look.
set -Eeuo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/splice-dr-target}"
pg_url="${SPLICE_DR_TEST_PG_URL:-postgresql://splice_dr_test:splice_dr_test@127.0.0.1:5432/postgres}"

step() { printf '== %s\n' "$*" >&2; }
fail() {
    printf 'smoke.sh: FAILED: %s\n' "$*" >&2
    exit 1
}
for tool in docker curl psql; do
    command -v "$tool" >/dev/null || fail "$tool is not installed"
done

export COMPOSE_PROJECT_NAME="sdt-smoke-$$"
project="$COMPOSE_PROJECT_NAME"
sv_db="sv_smoke_$$"
work="$(mktemp -d)"
bundle="$work/bundle"
sv_pid=

cleanup() {
    local rc=$?
    set +e
    if [ "$rc" -ne 0 ]; then
        printf -- '--- containers of %s ---\n' "$project" >&2
        docker ps -a --filter "label=com.docker.compose.project=$project" \
            --format '{{.Names}}\t{{.Status}}' >&2
        for c in $(docker ps -aq --filter "label=com.docker.compose.project=$project"); do
            printf -- '--- logs of %s ---\n' "$(docker inspect --format '{{.Name}}' "$c")" >&2
            docker logs --tail 15 "$c" 2>&1 | sed 's/^/    /' >&2
        done
        [ -s "$work/sv.log" ] && { printf -- '--- SV log ---\n' >&2; tail -n 15 "$work/sv.log" >&2; }
    fi
    if [ "${KEEP:-0}" = 1 ] && [ "$rc" -eq 0 ]; then
        printf 'KEEP=1: project %s left running: validator %s, SV pid %s on port %s (database %s)\n' \
            "$project" "$api" "$sv_pid" "$sv_port" "$sv_db" >&2
        exit 0
    fi
    "$bundle/stop.sh" >/dev/null 2>&1
    docker volume rm "${project}_postgres-splice" "${project}_domain-upgrade-dump" >/dev/null 2>&1
    if [ -n "$sv_pid" ]; then
        kill "$sv_pid" 2>/dev/null
        wait "$sv_pid" 2>/dev/null
    fi
    psql "$pg_url" -q -c "DROP DATABASE IF EXISTS \"$sv_db\" WITH (FORCE)" >/dev/null 2>&1
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the bundle and the images ------------------------------------------------------------
# The bundle's nginx publishes port 80: one node at a time on a host (the tests' lock too).
exec 8>/var/tmp/splice-dr-port80.lock
flock 8
bash "$here/assemble.sh" "$bundle"
sim_bin="${SPLICE_SIM_BIN:-}"
if [ -z "$sim_bin" ]; then
    step "cargo build -p splice-sim"
    (cd "$repo" && cargo build -q -p splice-sim)
    sim_bin="$CARGO_TARGET_DIR/debug/splice-sim"
fi
step "images"
t0=$SECONDS
bash "$repo/tests/images/build.sh" "$sim_bin" >/dev/null
printf '   images ready in %s s\n' "$((SECONDS - t0))" >&2

# ---- the SV on the host --------------------------------------------------------------------
step "simulated SV on the host (database $sv_db)"
"$sim_bin" sv --listen 0.0.0.0:0 --pg-url "$pg_url" --sv-db "$sv_db" >"$work/sv.out" 2>"$work/sv.log" &
sv_pid=$!
sv_port=
for _ in $(seq 100); do
    sv_port="$(sed -n 's|.*listening on http://[^:]*:\([0-9]*\).*|\1|p' "$work/sv.out" | head -n1)"
    [ -n "$sv_port" ] && break
    kill -0 "$sv_pid" 2>/dev/null || fail "the SV exited"
    sleep 0.1
done
[ -n "$sv_port" ] || fail "the SV did not report its port"
# The real bundle has no host.docker.internal entry: the host's address on docker0.
gateway="$(docker network inspect bridge --format '{{range .IPAM.Config}}{{.Gateway}}{{end}}')"
# Engines that report no gateway: the subnet's first address (docker0's).
[ -n "$gateway" ] || gateway="$(docker network inspect bridge --format '{{range .IPAM.Config}}{{.Subnet}}{{end}}' |
    awk -F'[./]' '{ print $1 "." $2 "." $3 "." $4 + 1 }')"
sv_url="http://$gateway:$sv_port"
printf '   SV on port %s, containers use %s\n' "$sv_port" "$sv_url" >&2

# The runbook's address, without /etc/hosts: curl sends the name, connects to the loopback.
api="http://wallet.localhost/api/validator"
resolve=(--resolve wallet.localhost:80:127.0.0.1)
check_api() { # check_api -> prints the party id, once readyz answers 200 (up to 120 s)
    local code body
    for _ in $(seq 240); do
        code="$(curl -s "${resolve[@]}" -o /dev/null -w '%{http_code}' "$api/readyz")"
        [ "$code" = 200 ] && break
        sleep 0.5
    done
    [ "$code" = 200 ] || fail "readyz answered $code"
    body="$(curl -sf "${resolve[@]}" "$api/v0/validator-user")" || fail "validator-user failed"
    [[ "$body" == *'"party_id":"smoke::'* ]] || fail "unexpected validator-user answer: $body"
    sed -n 's/.*"party_id":"\([^"]*\)".*/\1/p' <<<"$body"
}

# ---- first start ---------------------------------------------------------------------------
step "start.sh -w (project $project)"
t0=$SECONDS
"$bundle/start.sh" -s "$sv_url" -o "" -p smoke -m 0 -w 2>"$work/start1.log" ||
    { cat "$work/start1.log" >&2; fail "start.sh failed"; }
printf '   healthy in %s s\n' "$((SECONDS - t0))" >&2
party="$(check_api)"
printf '   party %s\n' "$party" >&2
participants="$(curl -sf "http://127.0.0.1:$sv_port/sv/participants")" || fail "the SV did not answer"
grep -q '"participant_id":"smoke"' <<<"$participants" ||
    fail "the validator did not register with the SV at $sv_url"
owner="$(docker run --rm --entrypoint stat -v "${project}_domain-upgrade-dump:/d" \
    splice-dr-test/pg:15 -c %u:%g /d)"
[ "$owner" = 1001:1001 ] || fail "the dump volume is owned by $owner, not 1001:1001"

# ---- stop, start again on the same volumes -------------------------------------------------
step "stop.sh"
"$bundle/stop.sh" 2>"$work/stop1.log" || { cat "$work/stop1.log" >&2; fail "stop.sh failed"; }
[ -z "$(docker ps -aq --filter "label=com.docker.compose.project=$project")" ] ||
    fail "containers left after stop.sh"
docker volume inspect "${project}_postgres-splice" >/dev/null 2>&1 || fail "stop.sh removed the postgres volume"

step "start.sh -w again (same data)"
t0=$SECONDS
"$bundle/start.sh" -s "$sv_url" -o "" -p smoke -m 0 -w 2>"$work/start2.log" ||
    { cat "$work/start2.log" >&2; fail "second start.sh failed"; }
printf '   healthy in %s s\n' "$((SECONDS - t0))" >&2
party2="$(check_api)"
[ "$party2" = "$party" ] || fail "party changed across restart: $party -> $party2"
validator_logs="$(docker logs "$(docker ps -q --filter "label=com.docker.compose.project=$project" \
    --filter label=com.docker.compose.service=validator)" 2>&1)"
grep -q 'start=restarted' <<<"$validator_logs" ||
    fail "the validator did not restart on its existing databases"

if [ "${KEEP:-0}" != 1 ]; then
    step "stop.sh, remove volumes"
    "$bundle/stop.sh" 2>/dev/null || fail "second stop.sh failed"
fi
echo "smoke.sh: OK" >&2
