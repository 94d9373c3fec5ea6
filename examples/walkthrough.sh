#!/usr/bin/env bash
# A local Postgres walk-through of splice-dr (the quick start until `splice-dr demo`
# exists): builds the binary, creates a validator and a participant database with data,
# takes a verified backup, breaks the data, restores it, and proves every table came back.
# Everything it creates is removed at the end. Run as root on a machine with Postgres 15
# installed (it starts the cluster and creates a test role via tests/pg-setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/splice-dr-target}"
sh tests/pg-setup.sh
cargo build -q -p splice-dr
BIN="$CARGO_TARGET_DIR/debug/splice-dr"

export PGHOST=127.0.0.1 PGUSER=splice_dr_test PGPASSWORD=splice_dr_test
WORK=$(mktemp -d /tmp/splice-dr-walkthrough.XXXXXX)
V=walkthrough_validator P=walkthrough_participant-0
cleanup() {
    psql -qd postgres -c "DROP DATABASE IF EXISTS $V WITH (FORCE)" -c "DROP DATABASE IF EXISTS \"$P\" WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
cleanup; mkdir -p "$WORK"

echo "== 1. a validator node's two databases"
psql -qd postgres -c "CREATE DATABASE $V" -c "CREATE DATABASE \"$P\""
psql -qd "$V" -c "CREATE TABLE users (id serial PRIMARY KEY, name text, attrs jsonb);
  INSERT INTO users (name, attrs) SELECT 'user-' || g, jsonb_build_object('n', g) FROM generate_series(1, 5000) g;"
psql -qd "$P" -c "CREATE TABLE contracts (id bigserial PRIMARY KEY, template text, raw bytea);
  CREATE INDEX ON contracts (template);
  INSERT INTO contracts (template, raw) SELECT 'Amulet:' || g % 5, sha256(g::text::bytea) FROM generate_series(1, 50000) g;"
fingerprint() {
    for db in "$V" "$P"; do
        for t in $(psql -Atd "$db" -c "SELECT tablename FROM pg_tables WHERE schemaname='public' ORDER BY 1"); do
            psql -Atd "$db" -c "SELECT '$db.$t', count(*), md5(string_agg(x::text, '|' ORDER BY x::text)) FROM $t x"
        done
    done
}
BEFORE=$(fingerprint); echo "$BEFORE"

echo "== 2. config (docs/CONFIG.md explains every key)"
echo "$PGPASSWORD" > "$WORK/pg-password"
cat > "$WORK/splice-dr.toml" <<TOML
[daemon]
socket = "splice-dr.sock"
state_dir = "state"

[repository]
path = "backups"
max_age = "30d"

[[node]]
name = "validator-1"
backend = "postgres"
migration_id = 0

[node.postgres]
url = "postgresql://splice_dr_test@127.0.0.1:5432/postgres"
password_file = "pg-password"
validator_db = "$V"
participant_db = "$P"
TOML
"$BIN" -c "$WORK/splice-dr.toml" check

echo "== 3. start the daemon; the CLI talks to it over its socket"
"$BIN" -c "$WORK/splice-dr.toml" daemon 2>"$WORK/daemon.log" &
DAEMON=$!
for _ in $(seq 50); do [ -S "$WORK/splice-dr.sock" ] && break; sleep 0.1; done

echo "== 4. backup (validator DB strictly before participant DB, checksummed, verified)"
ID=$("$BIN" -c "$WORK/splice-dr.toml" backup)
echo "backup id: $ID"
"$BIN" -c "$WORK/splice-dr.toml" backups

echo "== 5. disaster: rows deleted and rewritten"
psql -qd "$V" -c "DELETE FROM users WHERE id % 2 = 0; UPDATE users SET attrs = NULL"
psql -qd "$P" -c "TRUNCATE contracts"

echo "== 6. what a restore would do (changes nothing)"
"$BIN" -c "$WORK/splice-dr.toml" restore --backup latest --dry-run | sed -n '/plan/,$p'

echo "== 7. restore (current data kept until the restored data is verified)"
START=$(date +%s.%N)
"$BIN" -c "$WORK/splice-dr.toml" restore --backup "$ID" --yes >/dev/null
END=$(date +%s.%N)
AFTER=$(fingerprint)
kill -TERM "$DAEMON"; wait "$DAEMON" || true

echo "== 8. result"
if [ "$BEFORE" = "$AFTER" ]; then
    printf 'every table identical to the backup; restore took %.1fs\n' "$(echo "$END - $START" | bc -l 2>/dev/null || echo 0)"
else
    echo "MISMATCH after restore"; diff <(echo "$BEFORE") <(echo "$AFTER"); exit 1
fi
"$BIN" -c "$WORK/splice-dr.toml" runs
