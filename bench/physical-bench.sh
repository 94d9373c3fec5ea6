#!/usr/bin/env bash
# Physical backup benchmark (not a test). On a scratch PostgreSQL 15 server of its own,
# holding the same participant-shaped data set as restore-bench.sh, it times in one run:
#   a. the runbook:          pg_dump plain        -> createdb + psql < dump.sql
#   b. splice-dr logical:    backup               -> restore --backup ID
#   c. splice-dr physical:   backup --kind physical -> restore --backup ID --to backup-end
#   d. the physical limit:   a plain copy of the data directory (cp -a, then sync)
#   e. continuous WAL:       the daemon streaming; backup --kind physical; BENCH_WAL_MB of
#                            WAL written after it while a client commits a heartbeat row
#                            every 100 ms; the server SIGKILLed; restore --to latest
# and prints the ratios against the targets of issue 15:
#   runbook_restore / physical_restore  >= 5
#   logical_restore / physical_restore  >= 3
#   splicedr_logical_backup / pg_dump   <= 1.0
#   every heartbeat acknowledged more than 2 s before the kill is restored (the RPO)
#
# Usage:  bench/physical-bench.sh                   (1 GB of data)
#         BENCH_SIZE_MB=50 bench/physical-bench.sh  (quick)
# Env:
#   BENCH_SIZE_MB   total size of the two source databases (default 1024)
#   BENCH_JOBS      splice-dr `jobs` (default 2)
#   BENCH_WAL_MB    WAL written after the base backup of part e (default 256)
#   BENCH_PORT      the scratch server's port (default 5498)
#   BENCH_TMPDIR    parent of the scratch directories (default /var/tmp)
#   BENCH_STRICT=1  exit 1 when a target is missed (default: exit 0, it is a benchmark)
#   SPLICE_DR_BIN   the splice-dr binary to measure (default: build --release)
#   CARGO_TARGET_DIR  (default /var/tmp/splice-dr-target)
# Needs root (the scratch server runs as the `postgres` user through runuser) and the
# Debian PostgreSQL 15 packages.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "$0")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"
SIZE_MB="${BENCH_SIZE_MB:-1024}"
JOBS="${BENCH_JOBS:-2}"
WAL_MB="${BENCH_WAL_MB:-256}"
PORT="${BENCH_PORT:-5498}"
PGBIN=/usr/lib/postgresql/15/bin
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/splice-dr-target}"

# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"

export PGHOST=127.0.0.1 PGPORT="$PORT" PGUSER=bench PGPASSWORD=bench
unset PGDATABASE PGOPTIONS PGSERVICE || true
SRC_V=bench_validator
SRC_P=bench_participant-0
RT_V=bench_rt_validator
RT_P=bench_rt_participant-0

[ "$(id -u)" = 0 ] || die "run as root: the scratch server runs as postgres through runuser"
[ -x "$PGBIN/initdb" ] || die "$PGBIN/initdb missing: install postgresql-15"

WORK=""
PGROOT=""
DAEMON_PID=""
HB_PID=""
pg_ctl_as() { runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGROOT/data" "$@"; }
cleanup() {
    local rc=$?
    set +e
    log "cleaning up"
    [ -n "$HB_PID" ] && kill "$HB_PID" 2>/dev/null && wait "$HB_PID" 2>/dev/null
    [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
    [ -n "$PGROOT" ] && [ -f "$PGROOT/data/postmaster.pid" ] && pg_ctl_as -m immediate -w stop >/dev/null 2>&1
    [ -n "$PGROOT" ] && rm -rf "$PGROOT"
    [ -n "$WORK" ] && rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- 1. splice-dr binary
WORK="$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/splice-dr-pbench.XXXXXX")"
chmod 700 "$WORK"
bench_binary "$REPO_ROOT"

# ---------------------------------------------------------------- 2. scratch server
# Its own cluster: a physical restore replaces every database of the server it restores.
PGROOT="$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/splice-dr-pbench-pg.XXXXXX")"
chown postgres: "$PGROOT"
chmod 700 "$PGROOT"
log "scratch PostgreSQL 15 server in $PGROOT, port $PORT"
runuser -u postgres -- "$PGBIN/initdb" -D "$PGROOT/data" --auth-local=trust \
    --auth-host=scram-sha-256 -U postgres >/dev/null
cat >>"$PGROOT/data/postgresql.conf" <<CONF
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PGROOT'
CONF
echo "host replication bench 127.0.0.1/32 scram-sha-256" >>"$PGROOT/data/pg_hba.conf"
START_CMD="runuser -u postgres -- $PGBIN/pg_ctl -D $PGROOT/data -l $PGROOT/server.log -w -t 600 start"
# As an operator's `systemctl stop` would, it succeeds on a server that already died
# (part e kills it); splice-dr checks postmaster.pid itself before it moves anything.
STOP_CMD="runuser -u postgres -- $PGBIN/pg_ctl -D $PGROOT/data -m fast -w -t 600 stop || true"
sh -c "$START_CMD" >/dev/null
runuser -u postgres -- "$PGBIN/psql" -X -q -h "$PGROOT" -p "$PORT" -U postgres -d postgres \
    -c "CREATE ROLE bench LOGIN SUPERUSER REPLICATION PASSWORD 'bench'" >/dev/null
PG_SERVER="$(q 'SHOW server_version')"

# ---------------------------------------------------------------- 3. source data
bench_make_data "$SRC_V" "$SRC_P" "$SIZE_MB"
table_counts "$SRC_V" >"$WORK/counts.validator"
table_counts "$SRC_P" >"$WORK/counts.participant"
SRC_ROWS=$(awk '{ s += $2 } END { print s }' "$WORK/counts.validator" "$WORK/counts.participant")
SZ_CLUSTER=$(du -sb "$PGROOT/data" | awk '{ print $1 }')

# Makes the live databases differ from every backup, so each restore has work to undo.
damage() {
    q "DELETE FROM validator.acs_store WHERE event_number % 10 = $1" "$SRC_V" >/dev/null
    q "DELETE FROM participant.contracts WHERE id % 10 = $1" "$SRC_P" >/dev/null
    q "INSERT INTO participant.parameters VALUES ('after-backup-$1', 'x')" "$SRC_P" >/dev/null
    if diff -q "$WORK/counts.participant" <(table_counts "$SRC_P") >/dev/null; then
        die "the live participant database did not change"
    fi
}

# ---------------------------------------------------------------- 4a. runbook
bench_runbook

# ---------------------------------------------------------------- 4b/c. splice-dr
bench_sdr_setup "data_dir = \"$PGROOT/data\"
server_stop_command = \"$STOP_CMD\"
server_start_command = \"$START_CMD\"
physical_replaces_cluster = true" "wal_streaming = true"
# The id of the newest backup of `kind`.
newest_of() {
    sdr --json backups | python3 -c '
import json, sys
data = json.load(sys.stdin)
rows = data if isinstance(data, list) else data.get("backups", [])
ids = [r.get("id") for r in rows if r.get("kind", "logical") == sys.argv[1]]
print(sorted(ids)[-1] if ids else "")
' "$1"
}
# Runs `splice-dr $@`, its output kept in $WORK/sdr/<label>.{out,err}; prints seconds.
timed_sdr() {
    local label="$1" t0
    shift
    settle
    t0=$(now)
    sdr "$@" >"$WORK/sdr/$label.out" 2>"$WORK/sdr/$label.err" \
        || { cat "$WORK/sdr/$label.err" >&2; die "splice-dr $* failed"; }
    since "$t0"
}

log "b. splice-dr backup (logical)"
T_LOG_BACKUP=$(timed_sdr logical-backup backup --kind logical)
LOG_ID=$(newest_of logical)
damage 1
log "b. splice-dr restore --backup $LOG_ID"
T_LOG_RESTORE=$(timed_sdr logical-restore restore --backup "$LOG_ID" --yes)
check_counts "$SRC_V" validator
check_counts "$SRC_P" participant

log "c. splice-dr backup --kind physical"
T_PHYS_BACKUP=$(timed_sdr physical-backup backup --kind physical)
PHYS_ID=$(newest_of physical)
[ -n "$PHYS_ID" ] || die "no physical backup listed after splice-dr backup --kind physical"
damage 2
log "c. splice-dr restore --backup $PHYS_ID --to backup-end"
T_PHYS_RESTORE=$(timed_sdr physical-restore restore --backup "$PHYS_ID" --to backup-end --yes)
check_counts "$SRC_V" validator
check_counts "$SRC_P" participant
KEPT=$(find "$PGROOT" -maxdepth 1 -name 'data.sdr_kept_*' | wc -l)
[ "$KEPT" = 0 ] || die "the physical restore left $KEPT kept data directories behind"
SZ_PHYS=$(du -sb "$WORK/sdr/repo/$PHYS_ID" | awk '{ print $1 }')

# ---------------------------------------------------------------- 4d. the physical limit
log "d. cp -a of the data directory, then sync"
settle
t0=$(now)
cp -a "$PGROOT/data" "$WORK/copy"
sync
T_COPY=$(since "$t0")
rm -rf "$WORK/copy"

# ---------------------------------------------------------------- 4e. continuous WAL
# The node's WAL as the daemon reports it: "receiving lag_bytes".
wal_state() {
    sdr --json status 2>/dev/null | python3 -c '
import json, sys
w = (json.load(sys.stdin).get("nodes") or [{}])[0].get("wal") or {}
print(w.get("receiving", False), w.get("lag_bytes", "none"))
' 2>/dev/null || echo "False none"
}
wait_caught_up() {
    local i
    for i in $(seq 1 600); do
        [ "$(wal_state)" = "True 0" ] && return 0
        sleep 0.2
    done
    die "the WAL receiver did not catch up: $(wal_state); daemon log: $WORK/sdr/daemon.log"
}
lsn() { q "SELECT pg_current_wal_lsn()"; }
log "e. splice-dr daemon with continuous WAL"
"$BIN" -c "$CFG" daemon >"$WORK/sdr/daemon.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 1 300); do [ -S "$WORK/sdr/sock" ] && break; sleep 0.1; done
wait_caught_up
log "e. splice-dr backup --kind physical (through the daemon)"
sdr backup --kind physical >"$WORK/sdr/wal-backup.out" 2>"$WORK/sdr/wal-backup.err" \
    || { cat "$WORK/sdr/wal-backup.err" >&2; die "splice-dr backup --kind physical failed"; }
WAL_ID=$(newest_of physical)
q "CREATE TABLE public.wal_load (id bigint, pad text)" "$SRC_P" >/dev/null
q "CREATE TABLE public.heartbeat (at timestamptz)" "$SRC_P" >/dev/null
WAL_START=$(lsn)
# The heartbeat: one committed row every 100 ms; a line per acknowledged commit.
(
    while :; do
        psql -X -q -At -d "$SRC_P" -c "INSERT INTO public.heartbeat VALUES (clock_timestamp()) RETURNING extract(epoch FROM at)" 2>/dev/null || true
        sleep 0.1
    done
) >"$WORK/heartbeats" &
HB_PID=$!
log "e. writing $WAL_MB MB of WAL"
ROWS_PER_BATCH=100000
while :; do
    written=$(q "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$WAL_START')")
    [ "${written%.*}" -ge $((WAL_MB * 1048576)) ] && break
    q "INSERT INTO public.wal_load SELECT g, repeat(md5(g::text), 6) FROM generate_series(1, $ROWS_PER_BATCH) g" "$SRC_P" >/dev/null
done
WAL_BYTES=$(q "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$WAL_START')")
WAL_ROWS=$(q "SELECT count(*) FROM public.wal_load" "$SRC_P")
sleep 3
log "e. SIGKILL of the server's postmaster"
PM_PID=$(head -1 "$PGROOT/data/postmaster.pid")
kill -9 "$PM_PID"
T_KILL=$(now)
sleep 1
kill "$HB_PID" 2>/dev/null; wait "$HB_PID" 2>/dev/null || true
HB_PID=""
HB_ACKED=$(wc -l <"$WORK/heartbeats")
# Every backend of the killed postmaster exits once it notices its parent is gone (each
# runs in the data directory).
cluster_procs() {
    local p
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/cwd" 2>/dev/null)" = "$PGROOT/data" ] && echo "${p#/proc/}"
    done
    return 0
}
for _ in $(seq 1 100); do
    [ -z "$(cluster_procs)" ] && break
    sleep 0.1
done
[ -z "$(cluster_procs)" ] || die "processes of the killed server still run: $(cluster_procs)"
log "e. splice-dr restore --backup $WAL_ID --to latest"
T_WAL_RESTORE=$(timed_sdr wal-restore restore --backup "$WAL_ID" --to latest --yes)
RESTORED_ROWS=$(q "SELECT count(*) FROM public.wal_load" "$SRC_P")
[ "$RESTORED_ROWS" = "$WAL_ROWS" ] || die "restored $RESTORED_ROWS of $WAL_ROWS rows written after the backup"
q "SELECT extract(epoch FROM at) FROM public.heartbeat" "$SRC_P" | sort >"$WORK/heartbeats.restored"
LAST_RESTORED=$(tail -1 "$WORK/heartbeats.restored")
RPO=$(awk -v k="$T_KILL" -v l="$LAST_RESTORED" 'BEGIN { printf "%.2f", k - l }')
# Acknowledged more than 2 s before the kill, and not restored.
LOST_OLD=$(sort "$WORK/heartbeats" | comm -23 - "$WORK/heartbeats.restored" \
    | awk -v k="$T_KILL" '$1 < k - 2 { n++ } END { print n + 0 }')
V_RPO=$([ "$LOST_OLD" = 0 ] && echo PASS || echo MISS)
kill "$DAEMON_PID" 2>/dev/null; wait "$DAEMON_PID" 2>/dev/null || true
DAEMON_PID=""

# ---------------------------------------------------------------- 5. report
R_PHYS_RUNBOOK=$(ratio "$T_PLAIN_RESTORE" "$T_PHYS_RESTORE")
R_PHYS_LOGICAL=$(ratio "$T_LOG_RESTORE" "$T_PHYS_RESTORE")
R_BACKUP=$(ratio "$T_LOG_BACKUP" "$T_PLAIN_DUMP")
R_PHYS_COPY=$(ratio "$T_PHYS_RESTORE" "$T_COPY")
V1=$(verdict "$R_PHYS_RUNBOOK" ">=" 5)
V2=$(verdict "$R_PHYS_LOGICAL" ">=" 3)
V3=$(verdict "$R_BACKUP" "<=" 1.0)
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", b / 1048576 / s; else print "nan" }'; }

echo
echo "splice-dr physical benchmark  $(date -u +%Y-%m-%dT%H:%M:%SZ)  host $(hostname) ($(nproc) CPUs)"
echo "postgres $PG_SERVER (scratch server, defaults), jobs=$JOBS, splice-dr $("$BIN" --version | awk '{ print $2 }') built from $BUILT_FROM"
echo "data: $SRC_V $(mb "$SIZE_V") MB + $SRC_P $(mb "$SIZE_P") MB (BENCH_SIZE_MB=$SIZE_MB), $SRC_ROWS rows, data directory $(mb "$SZ_CLUSTER") MB, built in ${T_BUILD}s"
echo
printf '%-40s %10s %10s\n' "method" "backup s" "restore s"
printf '%-40s %10s %10s\n' "a. runbook: pg_dump plain + psql" "$T_PLAIN_DUMP" "$T_PLAIN_RESTORE"
printf '%-40s %10s %10s\n' "b. splice-dr logical" "$T_LOG_BACKUP" "$T_LOG_RESTORE"
printf '%-40s %10s %10s\n' "c. splice-dr physical (to backup-end)" "$T_PHYS_BACKUP" "$T_PHYS_RESTORE"
printf '%-40s %10s %10s\n' "d. cp -a of the data directory + sync" "" "$T_COPY"
printf '%-40s %10s %10s\n' "e. physical + WAL replay (to latest)" "" "$T_WAL_RESTORE"
echo
echo "physical backup in the repository: $(mb "$SZ_PHYS") MB"
echo "file copy throughput (the physical limit): $(mbps "$SZ_CLUSTER" "$T_COPY") MB/s;" \
    "physical restore moved the data directory at $(mbps "$SZ_CLUSTER" "$T_PHYS_RESTORE") MB/s"
echo "e. $(mb "$WAL_BYTES") MB of WAL ($WAL_ROWS rows) written after the base backup, replayed" \
    "by the restore to latest: $(mbps "$WAL_BYTES" "$T_WAL_RESTORE") MB of WAL per second of restore"
echo "e. RPO: the last restored heartbeat committed ${RPO}s before the SIGKILL of the server;" \
    "$HB_ACKED heartbeats acknowledged, $LOST_OLD acknowledged more than 2 s before the kill missing"
# The newest run of each flow is the physical one.
for flow in backup restore; do
    run="$(bench_run_of "$flow" || true)"
    [ -n "$run" ] || continue
    echo
    echo "splice-dr physical $flow run $run, step durations (s):"
    step_table "$run" || true
done
echo
echo "RATIO runbook_restore/physical_restore = $R_PHYS_RUNBOOK (target >= 5) $V1"
echo "RATIO logical_restore/physical_restore = $R_PHYS_LOGICAL (target >= 3) $V2"
echo "RATIO splicedr_logical_backup/pg_dump = $R_BACKUP (target <= 1.0) $V3"
echo "RATIO physical_restore/file_copy = $R_PHYS_COPY (the limit is 1.0) INFO"
echo "RPO seconds = $RPO; acknowledged commits older than 2 s lost = $LOST_OLD (target 0) $V_RPO"

if [ "${BENCH_STRICT:-0}" = 1 ] && { [ "$V1" = MISS ] || [ "$V2" = MISS ] || [ "$V3" = MISS ] || [ "$V_RPO" = MISS ]; }; then
    exit 1
fi
