#!/usr/bin/env bash
# Shared by the benchmarks (sourced, not run): logging and timing helpers, the
# participant-shaped data set, row counts, and the step table of a splice-dr run.
# Callers set PGHOST/PGPORT/PGUSER/PGPASSWORD, WORK (a private scratch directory) and
# an `sdr` function running their splice-dr binary with their config.

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
q() { psql -X -q -v ON_ERROR_STOP=1 -At -d "${2:-postgres}" -c "$1"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }'; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
# Fairness: flush dirty buffers and the OS page cache writes before each timed step.
settle() { q "CHECKPOINT" >/dev/null; sync; }

drop_db() { q "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" >/dev/null; }

# Creates the source databases $1 (validator) and $2 (participant) of about $3 MB in
# total, shaped like a Splice node's (jsonb contract payloads, event blobs, many indexes),
# frozen and analysed; sets T_BUILD, SIZE_V and SIZE_P.
bench_make_data() {
    local SRC_V="$1" SRC_P="$2" SIZE_MB="$3" t0
# Row counts are derived from measured bytes/row (heap + indexes) so the databases land
# near ~10% / ~90% of BENCH_SIZE_MB; the real sizes are printed below.
V_BYTES=$(( SIZE_MB * 1048576 / 10 ))
P_BYTES=$(( SIZE_MB * 1048576 - V_BYTES ))
V_ACS=$((   V_BYTES * 60 / 100 / 665 + 1 ))
V_TXLOG=$(( V_BYTES * 40 / 100 / 500 + 1 ))
P_CONTRACTS=$(( P_BYTES * 50 / 100 / 780 + 1 ))
P_EVENTS=$((    P_BYTES * 35 / 100 / 280 + 1 ))
P_COMMANDS=$((  P_BYTES * 15 / 100 / 355 + 1 ))

log "creating $SRC_V and $SRC_P (target ${SIZE_MB} MB in total)"
t0=$(now)
q "CREATE DATABASE $SRC_V TEMPLATE template0" >/dev/null
q "CREATE DATABASE \"$SRC_P\" TEMPLATE template0" >/dev/null

psql -X -q -v ON_ERROR_STOP=1 -d "$SRC_V" >/dev/null <<SQL
SET synchronous_commit = off;
SET maintenance_work_mem = '256MB';
CREATE SCHEMA validator;
CREATE SEQUENCE validator.txlog_seq;
CREATE TABLE validator.acs_store (
    store_id      int     NOT NULL,
    event_number  bigint  NOT NULL,
    contract_id   text    NOT NULL,
    template_id   text    NOT NULL,
    create_arguments jsonb NOT NULL,
    contract_expires_at timestamptz,
    PRIMARY KEY (store_id, event_number)
);
CREATE TABLE validator.txlog_store (
    entry_number  bigint  PRIMARY KEY DEFAULT nextval('validator.txlog_seq'),
    store_id      int     NOT NULL,
    tx_log_id     text    NOT NULL,
    entry_type    text    NOT NULL,
    entry_data    bytea   NOT NULL,
    record_time   timestamptz NOT NULL
);
CREATE TABLE validator.store_descriptors (
    id int PRIMARY KEY, descriptor jsonb NOT NULL
);
INSERT INTO validator.store_descriptors
SELECT i, jsonb_build_object('version', 1, 'name', 'store-' || i, 'party', 'party::' || md5(i::text))
  FROM generate_series(1, 20) i;
INSERT INTO validator.acs_store
SELECT i % 20, i, md5(i::text) || md5((i * 3)::text),
       'splice-amulet:Splice.Amulet:' || (ARRAY['Amulet','LockedAmulet','ValidatorRight','FeaturedAppRight','AnsEntry'])[1 + i % 5],
       jsonb_build_object(
           'owner', 'party-' || (i % 997) || '::1220' || md5((i % 997)::text),
           'dso', 'DSO::1220' || md5('dso'),
           'amount', jsonb_build_object('initialAmount', ((i * 7919) % 1000000) / 100.0,
                                        'createdAt', jsonb_build_object('number', i / 100),
                                        'ratePerRound', jsonb_build_object('rate', 0.00004)),
           'meta', jsonb_build_object('hash', md5(i::text || 'm'), 'labels', jsonb_build_array('a' || (i % 7), 'b' || (i % 11)))),
       now() + make_interval(days => (i % 90)::int)
  FROM generate_series(1::bigint, $V_ACS) i;
INSERT INTO validator.txlog_store (store_id, tx_log_id, entry_type, entry_data, record_time)
SELECT i % 20, 'tx-' || md5(i::text), (ARRAY['transfer','mint','tap','reward'])[1 + i % 4],
       sha512(int8send(i)) || sha256(int8send(-i)) || sha512(int8send(i * 31)) || sha512(int8send(i * 17)) || convert_to(repeat(md5(i::text), 3), 'UTF8'),
       timestamptz '2025-01-01' + make_interval(secs => i)
  FROM generate_series(1::bigint, $V_TXLOG) i;
CREATE INDEX acs_owner_idx    ON validator.acs_store ((create_arguments ->> 'owner'));
CREATE INDEX acs_template_idx ON validator.acs_store (template_id);
CREATE INDEX acs_store_tpl_exp_idx ON validator.acs_store (store_id, template_id, contract_expires_at);
CREATE INDEX txlog_id_idx     ON validator.txlog_store (tx_log_id);
CREATE INDEX txlog_store_time_idx ON validator.txlog_store (store_id, record_time);
SQL

psql -X -q -v ON_ERROR_STOP=1 -d "$SRC_P" >/dev/null <<SQL
SET synchronous_commit = off;
SET maintenance_work_mem = '256MB';
CREATE SCHEMA participant;
CREATE SEQUENCE participant.event_offset_seq;
CREATE TABLE participant.contracts (
    id            bigint  PRIMARY KEY,
    contract_id   text    NOT NULL,
    template_id   text    NOT NULL,
    package_id    text    NOT NULL,
    instance      jsonb   NOT NULL,
    ledger_time   timestamptz NOT NULL,
    archived      boolean NOT NULL DEFAULT false
);
CREATE TABLE participant.events (
    event_offset  bigint  PRIMARY KEY DEFAULT nextval('participant.event_offset_seq'),
    contract_row  bigint  NOT NULL,
    event_kind    smallint NOT NULL,
    event_blob    bytea   NOT NULL,
    recorded_at   timestamptz NOT NULL
);
CREATE TABLE participant.commands (
    id            bigint  PRIMARY KEY,
    command_id    text    NOT NULL,
    submitter     text    NOT NULL,
    status        text    NOT NULL,
    details       jsonb   NOT NULL
);
CREATE TABLE participant.parameters (
    key text PRIMARY KEY, value text NOT NULL
);
INSERT INTO participant.parameters
SELECT 'param-' || i, md5(i::text) FROM generate_series(1, 50) i;
INSERT INTO participant.contracts
SELECT i, '00' || md5(i::text) || md5((i + 1)::text) || 'ca1112',
       'Splice.' || (ARRAY['Amulet','Round','Validator','Dso','Ans','Wallet'])[1 + i % 6] || ':T' || (i % 40),
       md5((i % 40)::text),
       jsonb_build_object(
           'owner', 'party-' || (i % 4999) || '::1220' || md5((i % 4999)::text),
           'provider', 'provider-' || (i % 13),
           'amount', ((i * 104729) % 10000000) / 1000.0,
           'round', i / 500,
           'observers', jsonb_build_array('obs-' || (i % 37), 'obs-' || (i % 53), 'obs-' || (i % 71)),
           'payload', jsonb_build_object('hash', md5(i::text || 'p'), 'sig', md5(i::text || 's') || md5(i::text || 't'),
                                         'note', repeat('n', (i % 60)::int))),
       timestamptz '2025-01-01' + make_interval(secs => i * 2),
       i % 10 = 0
  FROM generate_series(1::bigint, $P_CONTRACTS) i;
INSERT INTO participant.events (contract_row, event_kind, event_blob, recorded_at)
SELECT 1 + (i * 7) % $P_CONTRACTS, (i % 3)::smallint,
       sha512(int8send(i)) || sha512(int8send(-i)) || sha256(int8send(i * 13)) || convert_to(md5(i::text), 'UTF8'),
       timestamptz '2025-01-01' + make_interval(secs => i)
  FROM generate_series(1::bigint, $P_EVENTS) i;
INSERT INTO participant.commands
SELECT i, 'cmd-' || md5(i::text), 'party-' || (i % 4999),
       (ARRAY['succeeded','failed','pending'])[1 + i % 3],
       jsonb_build_object('workflow', 'wf-' || (i % 101), 'act_as', jsonb_build_array('party-' || (i % 4999)),
                          'deduplication', md5(i::text || 'd'), 'trace', md5(i::text || 'r') || md5(i::text || 'q'))
  FROM generate_series(1::bigint, $P_COMMANDS) i;
CREATE INDEX contracts_owner_idx    ON participant.contracts ((instance ->> 'owner'));
CREATE INDEX contracts_template_idx ON participant.contracts (template_id);
CREATE INDEX contracts_tpl_time_idx ON participant.contracts (template_id, ledger_time) WHERE NOT archived;
CREATE UNIQUE INDEX contracts_cid_idx ON participant.contracts (contract_id);
CREATE INDEX events_contract_idx    ON participant.events (contract_row, event_kind);
CREATE INDEX commands_cmd_idx       ON participant.commands (command_id);
CREATE INDEX commands_submitter_status_idx ON participant.commands (submitter, status);
SQL
# Set hint bits and statistics now, so no timed step pays for it.
q "VACUUM (FREEZE, ANALYZE)" "$SRC_V" >/dev/null
q "VACUUM (FREEZE, ANALYZE)" "$SRC_P" >/dev/null
T_BUILD=$(since "$t0")

SIZE_V=$(q "SELECT pg_database_size('$SRC_V')")
SIZE_P=$(q "SELECT pg_database_size('$SRC_P')")
log "built in ${T_BUILD}s: $SRC_V $(mb "$SIZE_V") MB, $SRC_P $(mb "$SIZE_P") MB"
}

# Per-table exact row counts of a database, "schema.table count" lines, sorted.
table_counts() {
    local db="$1" t
    while IFS= read -r t; do
        printf '%s %s\n' "$t" "$(q "SELECT count(*) FROM $t" "$db")"
    done < <(q "SELECT quote_ident(schemaname) || '.' || quote_ident(relname) FROM pg_stat_user_tables ORDER BY 1" "$db")
}


# Checks that `db` holds exactly the source row counts of `role`.
check_counts() {
    local db="$1" role="$2"
    if ! diff -u "$WORK/counts.$role" <(table_counts "$db") >&2; then
        die "$db does not have the source row counts of the $role database"
    fi
}

verdict() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { ok = (op == ">=") ? (v >= t) : (v <= t); print ok ? "PASS" : "MISS" }'; }

# Step durations from the journal (`show` in text form does not print them).
step_table() {
    sdr --json show "$1" 2>/dev/null | python3 -c '
import json, sys
from datetime import datetime
def ts(s):
    s = s.replace("Z", "+00:00")
    if "." in s:  # trim nanoseconds to what fromisoformat takes
        head, rest = s.split(".", 1)
        frac, tz = rest[:rest.index("+")], rest[rest.index("+"):]
        s = head + "." + frac[:6].ljust(6, "0") + tz
    return datetime.fromisoformat(s)
d = json.load(sys.stdin)
run = d.get("run", d) if isinstance(d, dict) else d
total = 0.0
for st in run.get("steps", []):
    if not st.get("finished_at"):
        continue
    sec = (ts(st["finished_at"]) - ts(st["started_at"])).total_seconds()
    if st.get("depth", 0) == 0:
        total += sec
    print("  %8.2f  %s%s [%s]" % (sec, "  " * st.get("depth", 0), st["name"], st.get("state")))
if run.get("started_at") and run.get("finished_at"):
    wall = (ts(run["finished_at"]) - ts(run["started_at"])).total_seconds()
    print("  %8.2f  (run, wall clock; steps sum %.2f, outside steps %.2f)" % (wall, total, wall - total))
'
}

# The runbook's logical backup and restore of $SRC_V and $SRC_P: `pg_dump` plain, then
# createdb + `psql < dump.sql` into $RT_V and $RT_P (checked, then dropped). PGOPTIONS for
# both is $BASE_PGOPTIONS. Sets T_PLAIN_DUMP, T_PLAIN_RESTORE and SZ_PLAIN.
bench_runbook() {
    local t0
    log "a. pg_dump plain"
    settle
    t0=$(now)
    PGOPTIONS="${BASE_PGOPTIONS:-}" pg_dump -f "$WORK/validator.sql" "$SRC_V"
    PGOPTIONS="${BASE_PGOPTIONS:-}" pg_dump -f "$WORK/participant.sql" "$SRC_P"
    T_PLAIN_DUMP=$(since "$t0")
    SZ_PLAIN=$(du -sb "$WORK/validator.sql" "$WORK/participant.sql" | awk '{ s += $1 } END { print s }')

    log "a. createdb + psql < dump.sql"
    settle
    t0=$(now)
    createdb -T template0 "$RT_V"
    PGOPTIONS="${BASE_PGOPTIONS:-}" psql -X -q -v ON_ERROR_STOP=1 -d "$RT_V" <"$WORK/validator.sql" >/dev/null
    createdb -T template0 "$RT_P"
    PGOPTIONS="${BASE_PGOPTIONS:-}" psql -X -q -v ON_ERROR_STOP=1 -d "$RT_P" <"$WORK/participant.sql" >/dev/null
    T_PLAIN_RESTORE=$(since "$t0")
    check_counts "$RT_V" validator
    check_counts "$RT_P" participant
    drop_db "$RT_V"; drop_db "$RT_P"
    rm -f "$WORK/validator.sql" "$WORK/participant.sql"
}

# Writes splice-dr's config for node `bench` (bare Postgres on $PGHOST:$PGPORT, databases
# $SRC_V and $SRC_P, `jobs = $JOBS`) with the extra [node.postgres] lines in $1, sets CFG
# and checks it with `splice-dr check`. `sdr` runs $BIN with it.
# Writes the site's config ($1: more [node.postgres] lines, $2: more [[node]] lines) and
# checks it.
bench_sdr_setup() {
    mkdir -p "$WORK/sdr/state" "$WORK/sdr/repo"
    printf '%s\n' "$PGPASSWORD" >"$WORK/sdr/pw"
    chmod 600 "$WORK/sdr/pw"
    CFG="$WORK/sdr/splice-dr.toml"
    cat >"$CFG" <<TOML
[daemon]
socket = "$WORK/sdr/sock"
state_dir = "$WORK/sdr/state"

[repository]
path = "$WORK/sdr/repo"
max_age = "30d"

[[node]]
name = "bench"
backend = "postgres"
migration_id = 0
${2:-}

[node.postgres]
url = "postgresql://$PGUSER@$PGHOST:$PGPORT/postgres"
password_file = "$WORK/sdr/pw"
validator_db = "$SRC_V"
participant_db = "$SRC_P"
jobs = $JOBS
$1
TOML
    sdr check >&2 || die "splice-dr check rejected $CFG"
}
sdr() { env -u PGPASSWORD -u PGUSER -u PGHOST -u PGPORT "$BIN" -c "$CFG" "$@"; }

# The id of the newest run of flow $1, from the journal.
bench_run_of() {
    sdr --json runs --limit 10 | python3 -c '
import json, sys
data = json.load(sys.stdin)
runs = data if isinstance(data, list) else data.get("runs", [])
for r in runs:
    if r.get("flow") == sys.argv[1]:
        print(r.get("id") or r.get("run_id")); break
' "$1"
}

# The splice-dr binary to measure, copied to $WORK/splice-dr (a concurrent build cannot
# swap it mid-run): $SPLICE_DR_BIN, or a release build of the source tree $1. Sets BIN and
# BUILT_FROM.
bench_binary() {
    if [ -n "${SPLICE_DR_BIN:-}" ]; then
        BUILT_FROM="prebuilt $SPLICE_DR_BIN"
        cp "$SPLICE_DR_BIN" "$WORK/splice-dr"
    else
        log "building splice-dr (release) from $1 into $CARGO_TARGET_DIR"
        (cd "$1" && cargo build --release -q -p splice-dr) >&2 || die "cargo build failed"
        [ -x "$CARGO_TARGET_DIR/release/splice-dr" ] || die "$CARGO_TARGET_DIR/release/splice-dr missing after build"
        # A private copy: a concurrent build in the shared target dir cannot swap it mid-run.
        cp "$CARGO_TARGET_DIR/release/splice-dr" "$WORK/splice-dr"
        BUILT_FROM="$1"
        if git -C "$1" rev-parse --git-dir >/dev/null 2>&1; then
            BUILT_FROM="$BUILT_FROM (git $(git -C "$1" rev-parse --short HEAD)$( [ -n "$(git -C "$1" status --porcelain 2>/dev/null)" ] && echo '+dirty'))"
        fi
    fi
    BIN="$WORK/splice-dr"
}
