#!/usr/bin/env bash
# docker-compose backend benchmark (not a test): on a real Docker engine, in one run,
#   1. stream a plain SQL dump into psql inside the postgres container
#        a. the runbook:  docker exec -i CONTAINER psql ... < dump.sql   (docker CLI)
#        b. splice-dr:    the backend's exec stream (the code restore uses), through the
#                         engine API (plugins/compose/examples/stream_into_psql.rs)
#      target: throughput(b) / throughput(a) >= 0.95
#   2. a whole-node restore
#        a. the runbook's manual sequence: stop.sh, docker volume rm, compose up -d
#           postgres-splice, pg_isready loop, psql < validator.sql, psql < participant.sql,
#           compose down, start.sh -w
#        b. splice-dr restore --yes (which also copies the volume aside first, verifies every
#           table's row count and waits for health)
#      reported: time(a) / time(b)
#
# Usage:  bench/compose-bench.sh                    (1 GB of data)
#         BENCH_SIZE_MB=100 bench/compose-bench.sh  (quick)
# Env: BENCH_SIZE_MB (default 1024), BENCH_ROUNDS (stream rounds, default 2),
#      CARGO_TARGET_DIR (default /var/tmp/splice-dr-target), BENCH_TMPDIR (default /var/tmp)
# Needs root, the Docker engine and Docker Compose v2 (tests/install-compose-v2.sh); builds
# the test images itself and runs the real Splice bundle (tests/compose/assemble.sh), whose
# nginx takes port 80.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
SIZE_MB="${BENCH_SIZE_MB:-1024}"
ROUNDS="${BENCH_ROUNDS:-2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/splice-dr-target}"
PROJECT="sdr-bench-$$"
export COMPOSE_PROJECT_NAME="$PROJECT" MIGRATION_ID=0 IMAGE_TAG=sim
SCRATCH="$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/sdr-compose-bench.XXXXXX")"
BUNDLE="$SCRATCH/bundle"
bash "$ROOT/tests/compose/assemble.sh" "$BUNDLE"
exec 8>/var/tmp/splice-dr-port80.lock
flock 8

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }'; }
min() { printf '%s\n' "$@" | sort -g | head -1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("0.0.0.0",0)); print(s.getsockname()[1])'; }
compose() { (cd "$BUNDLE" && docker compose "$@"); }
pg() { docker ps -q --filter "label=com.docker.compose.project=$PROJECT" --filter label=com.docker.compose.service=postgres-splice; }
psql_in() { docker exec -u postgres "$(pg)" psql -X -q -U cnadmin -v ON_ERROR_STOP=1 -At -d "$1" -c "$2"; }
settle() { psql_in postgres "CHECKPOINT" >/dev/null; sync; }

SV_PID=
cleanup() {
    log "cleaning up"
    compose down -v --remove-orphans -t 2 >/dev/null 2>&1 || true
    docker volume ls -q --filter label=io.splice-dr.kept-from | grep "^$PROJECT" | xargs -r docker volume rm -f >/dev/null 2>&1 || true
    [ -n "$SV_PID" ] && kill "$SV_PID" 2>/dev/null || true
    psql "postgresql://splice_dr_test:splice_dr_test@127.0.0.1:5432/postgres" -qc "DROP DATABASE IF EXISTS \"sv_bench_$$\" WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

log "building splice-dr, splice-sim and the stream helper (release)"
(cd "$ROOT" && cargo build --release -q -p splice-dr -p splice-sim && cargo build --release -q -p splice-dr-compose --example stream_into_psql)
BIN="$CARGO_TARGET_DIR/release"
sh "$ROOT/tests/pg-setup.sh" >/dev/null
flock /var/tmp/splice-dr-images.lock bash "$ROOT/tests/images/build.sh" "$BIN/splice-sim" >/dev/null

SV_PORT="$(free_port)"
"$BIN/splice-sim" sv --listen "0.0.0.0:$SV_PORT" \
    --pg-url "postgresql://splice_dr_test:splice_dr_test@127.0.0.1:5432/postgres" --sv-db "sv_bench_$$" \
    >"$SCRATCH/sv.log" 2>&1 &
SV_PID=$!
GATEWAY="$(docker network inspect bridge --format '{{range .IPAM.Config}}{{.Gateway}}{{end}}')"
[ -n "$GATEWAY" ] || GATEWAY="$(docker network inspect bridge --format '{{range .IPAM.Config}}{{.Subnet}}{{end}}' |
    awk -F'[./]' '{ print $1 "." $2 "." $3 "." $4 + 1 }')"
START=(-s "http://$GATEWAY:$SV_PORT" -o "" -p bench-validator -m 0 -w)
log "starting compose project $PROJECT"
bash "$BUNDLE/start.sh" "${START[@]}" >/dev/null

ROWS=$((SIZE_MB * 1024 * 1024 / 300))
log "loading ~${SIZE_MB} MB ($ROWS rows) into validator, 1/10 of it into participant-0"
for db in validator participant-0; do
    n=$ROWS
    [ "$db" = participant-0 ] && n=$((ROWS / 10))
    psql_in "$db" "CREATE SCHEMA bench; CREATE TABLE bench.blob (id bigint PRIMARY KEY, payload text NOT NULL);
        INSERT INTO bench.blob SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, $n) g;"
done
log "plain dumps the runbook's way (docker exec pg_dump > file)"
docker exec -u postgres "$(pg)" pg_dump -U cnadmin validator >"$SCRATCH/validator.sql"
docker exec -u postgres "$(pg)" pg_dump -U cnadmin participant-0 >"$SCRATCH/participant.sql"
DUMP_BYTES=$(stat -c %s "$SCRATCH/validator.sql")
log "validator.sql: $((DUMP_BYTES / 1048576)) MiB"

reset_target() {
    psql_in postgres "DROP DATABASE IF EXISTS bench_target WITH (FORCE)" >/dev/null
    psql_in postgres "CREATE DATABASE bench_target" >/dev/null
    settle
}
cli_times=() sdr_times=()
for r in $(seq 1 "$ROUNDS"); do
    reset_target
    t=$(now)
    docker exec -i -u postgres "$(pg)" psql -X -q -U cnadmin -d bench_target -v ON_ERROR_STOP=1 -o /dev/null <"$SCRATCH/validator.sql"
    cli_times+=("$(since "$t")")
    reset_target
    out=$("$BIN/examples/stream_into_psql" "$PROJECT" bench_target "$SCRATCH/validator.sql")
    sdr_times+=("${out%% *}")
    log "round $r: docker CLI ${cli_times[-1]} s, splice-dr ${sdr_times[-1]} s"
done
psql_in postgres "DROP DATABASE IF EXISTS bench_target WITH (FORCE)" >/dev/null
CLI_BEST=$(min "${cli_times[@]}") SDR_BEST=$(min "${sdr_times[@]}")
STREAM_RATIO=$(ratio "$CLI_BEST" "$SDR_BEST")

# Whole-node restore. The backup is taken first so both restores start from the same data.
mkdir -p "$SCRATCH/site"
cat >"$SCRATCH/site/splice-dr.toml" <<EOF
[daemon]
socket = "splice-dr.sock"
state_dir = "state"

[repository]
path = "repo"
max_age = "30d"

[[node]]
name = "validator-1"
backend = "compose"
migration_id = 0

[node.compose]
project = "$PROJECT"
EOF
SDR=("$BIN/splice-dr" --config "$SCRATCH/site/splice-dr.toml")
log "splice-dr backup"
t=$(now)
ID=$("${SDR[@]}" backup 2>"$SCRATCH/backup.log")
BACKUP_S=$(since "$t")
EXPECT=$(psql_in validator "SELECT count(*) FROM bench.blob")

log "runbook manual restore"
settle
t=$(now)
bash "$BUNDLE/stop.sh" >/dev/null 2>&1
docker volume rm "${PROJECT}_postgres-splice" >/dev/null
compose up -d postgres-splice >/dev/null 2>&1
until docker exec "$(pg)" pg_isready -h 127.0.0.1 -U cnadmin -d postgres >/dev/null 2>&1; do sleep 0.2; done
until psql_in validator "SELECT 1" >/dev/null 2>&1; do sleep 0.2; done
docker exec -i -u postgres "$(pg)" psql -X -q -U cnadmin -d validator -o /dev/null <"$SCRATCH/validator.sql"
docker exec -i -u postgres "$(pg)" psql -X -q -U cnadmin -d participant-0 -o /dev/null <"$SCRATCH/participant.sql"
compose down >/dev/null 2>&1
bash "$BUNDLE/start.sh" "${START[@]}" >/dev/null
MANUAL_S=$(since "$t")
[ "$(psql_in validator "SELECT count(*) FROM bench.blob")" = "$EXPECT" ] || { log "manual restore lost rows"; exit 1; }

log "splice-dr restore"
settle
t=$(now)
"${SDR[@]}" restore --backup "$ID" --yes >"$SCRATCH/restore.out" 2>"$SCRATCH/restore.log"
SDR_S=$(since "$t")
[ "$(psql_in validator "SELECT count(*) FROM bench.blob")" = "$EXPECT" ] || { log "splice-dr restore lost rows"; exit 1; }
RESTORE_RATIO=$(ratio "$MANUAL_S" "$SDR_S")
RUN_ID=$("${SDR[@]}" --json runs | python3 -c 'import json,sys; print(max(r["id"] for r in json.load(sys.stdin) if r["flow"] == "restore"))')
STEPS=$("${SDR[@]}" --json show "$RUN_ID" | python3 -c '
import json, sys
from datetime import datetime
def t(s): return datetime.fromisoformat(s.replace("Z", "+00:00")[:26] + "+00:00") if "." in s else datetime.fromisoformat(s.replace("Z", "+00:00"))
for s in json.load(sys.stdin)["steps"]:
    if s["depth"] == 0 and s.get("finished_at"):
        print("     %6.2f s  %s" % ((t(s["finished_at"]) - t(s["started_at"])).total_seconds(), s["name"][:70]))
')

cat <<EOF

compose benchmark: ${SIZE_MB} MB of rows, validator.sql $((DUMP_BYTES / 1048576)) MiB, $(nproc) cores, $(date -u +%Y-%m-%d)
1. stream a plain dump into psql in the container (best of $ROUNDS)
   docker exec -i ... psql < dump (CLI) : ${CLI_BEST} s  ($(awk -v b="$DUMP_BYTES" -v s="$CLI_BEST" 'BEGIN{printf "%.1f", b/1048576/s}') MiB/s)
   splice-dr backend exec stream        : ${SDR_BEST} s  ($(awk -v b="$DUMP_BYTES" -v s="$SDR_BEST" 'BEGIN{printf "%.1f", b/1048576/s}') MiB/s)
   throughput ratio splice-dr / CLI     : ${STREAM_RATIO}  (target >= 0.95: $(awk -v r="$STREAM_RATIO" 'BEGIN{print (r >= 0.95) ? "PASS" : "MISS"}'))
2. whole-node restore
   splice-dr backup (for reference)     : ${BACKUP_S} s
   runbook manual sequence              : ${MANUAL_S} s
   splice-dr restore --yes              : ${SDR_S} s  (includes moving the old data aside for rollback, row-count verification, health wait)
   ratio manual / splice-dr             : ${RESTORE_RATIO}
   splice-dr restore steps:
${STEPS}
EOF
