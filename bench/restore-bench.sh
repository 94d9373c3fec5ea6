#!/usr/bin/env bash
# Restore benchmark (not a test): times, on the same data and in the same run,
#   a. the runbook baseline: pg_dump plain  ->  createdb + psql < dump.sql
#   b. a hand-run            pg_dump -Fd -j2 ->  createdb + pg_restore -j2
#   c. splice-dr             backup          ->  restore --backup latest --yes
# and prints the timings and the ratios against the targets
#   baseline_restore / splicedr_restore >= 1.6
#   splicedr_restore / pg_restore_j2    <= 1.1
#
# Usage:  bench/restore-bench.sh                    (1 GB of data)
#         BENCH_SIZE_MB=50 bench/restore-bench.sh   (quick)
# Env:
#   BENCH_SIZE_MB     total size of the two source databases (default 1024)
#   BENCH_JOBS        -j for pg_dump/pg_restore and splice-dr `jobs` (default 2)
#   BENCH_TMPDIR      parent of the scratch directory (default /var/tmp)
#   BENCH_BASELINE_PGOPTIONS  PGOPTIONS for baselines a/b (default empty; splice-dr itself
#                     runs pg_restore with maintenance_work_mem=512MB, synchronous_commit=off)
#   BENCH_COMPRESS    splice-dr's `compress` for the backup (default: splice-dr's own default)
#   BENCH_VERBOSE=1   also print `splice-dr show` of the restore run and its log
#   BENCH_STRICT=1    exit 1 when a target is missed (default: exit 0, it is a benchmark)
#   CARGO_TARGET_DIR  (default /var/tmp/splice-dr-target)
#   BENCH_SRC_DIR     source tree to build splice-dr from (default: this repository), e.g.
#                     a `git archive HEAD` export when the working tree is mid-edit
#   SPLICE_DR_BIN     use this binary instead of building one
# Needs root (tests/pg-setup.sh starts the Debian Postgres 15 cluster) and cargo.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "$0")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"
SIZE_MB="${BENCH_SIZE_MB:-1024}"
JOBS="${BENCH_JOBS:-2}"
BASE_PGOPTIONS="${BENCH_BASELINE_PGOPTIONS:-}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/splice-dr-target}"
SRC_DIR="${BENCH_SRC_DIR:-$REPO_ROOT}"

export PGHOST=127.0.0.1 PGPORT=5432 PGUSER=splice_dr_test PGPASSWORD=splice_dr_test
unset PGDATABASE PGOPTIONS PGSERVICE || true

SRC_V=bench_validator
SRC_P=bench_participant-0
RT_V=bench_rt_validator
RT_P=bench_rt_participant-0

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
drop_bench_dbs() {
    local d
    while IFS= read -r d; do
        [ -n "$d" ] && drop_db "$d"
    done < <(q "SELECT datname FROM pg_database WHERE datname ~ '^bench_(rt_)?(validator|participant-0)(\$|__sdr_)'" 2>/dev/null || true)
}

WORK=""
cleanup() {
    local rc=$?
    set +e
    log "cleaning up"
    drop_bench_dbs
    [ -n "$WORK" ] && rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- 1. Postgres
log "ensuring Postgres 15 and the test role"
sh "$REPO_ROOT/tests/pg-setup.sh" >&2
q "SELECT 1" >/dev/null || die "cannot connect as $PGUSER@$PGHOST:$PGPORT"
PG_SERVER="$(q 'SHOW server_version')"

# ---------------------------------------------------------------- 2. splice-dr binary
WORK="$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/splice-dr-bench.XXXXXX")"
chmod 700 "$WORK"
bench_binary "$SRC_DIR"
drop_bench_dbs   # leftovers of an interrupted earlier run

# ---------------------------------------------------------------- 3. source data
bench_make_data "$SRC_V" "$SRC_P" "$SIZE_MB"

table_counts "$SRC_V" >"$WORK/counts.validator"
table_counts "$SRC_P" >"$WORK/counts.participant"
SRC_ROWS=$(awk '{ s += $2 } END { print s }' "$WORK/counts.validator" "$WORK/counts.participant")


# ---------------------------------------------------------------- 4a. runbook baseline
bench_runbook

# ---------------------------------------------------------------- 4b. pg_dump/pg_restore -j
log "b. pg_dump -Fd -j $JOBS"
settle
t0=$(now)
PGOPTIONS="$BASE_PGOPTIONS" pg_dump -Fd -j "$JOBS" -f "$WORK/validator.d" "$SRC_V"
PGOPTIONS="$BASE_PGOPTIONS" pg_dump -Fd -j "$JOBS" -f "$WORK/participant.d" "$SRC_P"
T_DIR_DUMP=$(since "$t0")
SZ_DIR=$(du -sb "$WORK/validator.d" "$WORK/participant.d" | awk '{ s += $1 } END { print s }')

log "b. createdb + pg_restore -j $JOBS"
settle
t0=$(now)
createdb -T template0 "$RT_V"
PGOPTIONS="$BASE_PGOPTIONS" pg_restore -j "$JOBS" -d "$RT_V" "$WORK/validator.d"
createdb -T template0 "$RT_P"
PGOPTIONS="$BASE_PGOPTIONS" pg_restore -j "$JOBS" -d "$RT_P" "$WORK/participant.d"
T_DIR_RESTORE=$(since "$t0")
check_counts "$RT_V" validator
check_counts "$RT_P" participant
drop_db "$RT_V"; drop_db "$RT_P"
rm -rf "$WORK/validator.d" "$WORK/participant.d"

# ---------------------------------------------------------------- 4c. splice-dr
bench_sdr_setup "${BENCH_COMPRESS:+compress = $BENCH_COMPRESS}"

log "c. splice-dr backup"
settle
t0=$(now)
sdr backup >"$WORK/sdr/backup.out" 2>"$WORK/sdr/backup.err" \
    || { cat "$WORK/sdr/backup.err" >&2; die "splice-dr backup failed"; }
T_SDR_BACKUP=$(since "$t0")
SZ_SDR=$(du -sb "$WORK/sdr/repo" | awk '{ print $1 }')
log "backup: $(tr '\n' ' ' <"$WORK/sdr/backup.out")"

# Make the live databases differ from the backup, so the restore has work to undo.
q "DELETE FROM validator.acs_store WHERE event_number % 10 = 0" "$SRC_V" >/dev/null
q "DELETE FROM participant.contracts WHERE id % 10 = 0" "$SRC_P" >/dev/null
q "DELETE FROM participant.events WHERE event_offset % 7 = 0" "$SRC_P" >/dev/null
q "INSERT INTO participant.parameters VALUES ('after-backup', 'x')" "$SRC_P" >/dev/null
if diff -q "$WORK/counts.participant" <(table_counts "$SRC_P") >/dev/null; then
    die "the live participant database did not change"
fi

log "c. splice-dr restore --backup latest --yes"
settle
t0=$(now)
sdr restore --backup latest --yes >"$WORK/sdr/restore.out" 2>"$WORK/sdr/restore.err" \
    || { cat "$WORK/sdr/restore.err" >&2; die "splice-dr restore failed"; }
T_SDR_RESTORE=$(since "$t0")
# Also the reference cost of an exact count(*) of every restored table (what splice-dr's
# post-restore verification runs), to split its "restore ... database" steps.
t0=$(now)
check_counts "$SRC_V" validator
check_counts "$SRC_P" participant
T_COUNT=$(since "$t0")
LEFT=$(q "SELECT count(*) FROM pg_database WHERE datname LIKE 'bench%\\_\\_sdr\\_%'")
[ "$LEFT" = 0 ] || die "splice-dr left $LEFT staging/kept databases behind"
log "splice-dr restore verified: source row counts are back, no staging/kept databases left"

# Step durations of the two runs, from the journal.
BACKUP_RUN="$(bench_run_of backup || true)"
RESTORE_RUN="$(bench_run_of restore || true)"

# ---------------------------------------------------------------- 5. report
R_RESTORE_BASE=$(ratio "$T_PLAIN_RESTORE" "$T_SDR_RESTORE")
R_RESTORE_J=$(ratio "$T_SDR_RESTORE" "$T_DIR_RESTORE")
R_DUMP_BASE=$(ratio "$T_PLAIN_DUMP" "$T_SDR_BACKUP")
R_DUMP_J=$(ratio "$T_SDR_BACKUP" "$T_DIR_DUMP")
V1=$(verdict "$R_RESTORE_BASE" ">=" 1.6)
V2=$(verdict "$R_RESTORE_J" "<=" 1.1)

echo
echo "splice-dr restore benchmark  $(date -u +%Y-%m-%dT%H:%M:%SZ)  host $(hostname) ($(nproc) CPUs)"
echo "postgres $PG_SERVER, jobs=$JOBS, splice-dr $("$BIN" --version | awk '{ print $2 }') built from $BUILT_FROM"
echo "baseline PGOPTIONS: '${BASE_PGOPTIONS}'"
echo "data: $SRC_V $(mb "$SIZE_V") MB + $SRC_P $(mb "$SIZE_P") MB = $(mb $((SIZE_V + SIZE_P))) MB (BENCH_SIZE_MB=$SIZE_MB), $SRC_ROWS rows, built in ${T_BUILD}s"
echo
printf '%-34s %10s %10s %12s\n' "method" "dump s" "restore s" "dump MB"
printf '%-34s %10s %10s %12s\n' "a. pg_dump plain + psql" "$T_PLAIN_DUMP" "$T_PLAIN_RESTORE" "$(mb "$SZ_PLAIN")"
printf '%-34s %10s %10s %12s\n' "b. pg_dump -Fd -j$JOBS + pg_restore -j$JOBS" "$T_DIR_DUMP" "$T_DIR_RESTORE" "$(mb "$SZ_DIR")"
printf '%-34s %10s %10s %12s\n' "c. splice-dr backup / restore" "$T_SDR_BACKUP" "$T_SDR_RESTORE" "$(mb "$SZ_SDR")"
echo
printf '%-44s %6s\n' "dump:    baseline_dump / splicedr_backup" "$R_DUMP_BASE"
printf '%-44s %6s\n' "dump:    splicedr_backup / pg_dump_j$JOBS" "$R_DUMP_J"
printf '%-44s %6s\n' "restore: baseline_restore / splicedr_restore" "$R_RESTORE_BASE"
printf '%-44s %6s\n' "restore: splicedr_restore / pg_restore_j$JOBS" "$R_RESTORE_J"

echo
echo "reference: count(*) of every restored table (both DBs, warm cache): ${T_COUNT}s"

if [ -n "$RESTORE_RUN" ]; then
    echo
    echo "splice-dr backup run $BACKUP_RUN, step durations (s):"
    step_table "$BACKUP_RUN" || true
    echo
    echo "splice-dr restore run $RESTORE_RUN, step durations (s):"
    step_table "$RESTORE_RUN" || true
    if [ "${BENCH_VERBOSE:-0}" = 1 ]; then
        echo
        echo "--- splice-dr show $RESTORE_RUN"
        sdr show "$RESTORE_RUN" 2>&1 || true
        echo "--- splice-dr restore stderr"
        cat "$WORK/sdr/restore.err"
    fi
fi

echo
echo "RATIO baseline_restore/splicedr_restore = $R_RESTORE_BASE (target >= 1.6) $V1"
echo "RATIO splicedr_restore/pg_restore_j$JOBS = $R_RESTORE_J (target <= 1.1) $V2"
R_BACKUP_BASE=$(ratio "$T_SDR_BACKUP" "$T_PLAIN_DUMP")
V3=$(awk -v r="$R_BACKUP_BASE" 'BEGIN { print (r <= 1.0) ? "PASS" : "MISS" }')
echo "RATIO splicedr_backup/baseline_dump = $R_BACKUP_BASE (target <= 1.0) $V3"
echo "RATIO splicedr_backup/pg_dump_j$JOBS = $R_DUMP_J (no target) INFO"

if [ "${BENCH_STRICT:-0}" = 1 ] && { [ "$V1" = MISS ] || [ "$V2" = MISS ] || [ "$V3" = MISS ]; }; then
    exit 1
fi
