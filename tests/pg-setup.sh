#!/bin/sh
# Idempotent test setup for the Postgres-backed tests (plugins/postgres/tests):
# starts the Debian PostgreSQL 15 cluster when it is down and creates the test superuser
# `splice_dr_test` (password `splice_dr_test`) that the tests use over TCP 127.0.0.1:5432.
# Run as root. Tests read SPLICE_DR_TEST_PG_URL, defaulting to
# postgresql://splice_dr_test:splice_dr_test@127.0.0.1:5432/postgres
set -eu

VERSION="${PG_VERSION:-15}"
CLUSTER="${PG_CLUSTER:-main}"

if ! pg_lsclusters -h "$VERSION" "$CLUSTER" 2>/dev/null | grep -q online; then
    pg_ctlcluster --skip-systemctl-redirect "$VERSION" "$CLUSTER" start
fi

# Wait until the server accepts connections.
i=0
until runuser -u postgres -- pg_isready -q; do
    i=$((i + 1))
    if [ "$i" -gt 30 ]; then
        echo "postgres did not become ready" >&2
        exit 1
    fi
    sleep 1
done

runuser -u postgres -- psql -v ON_ERROR_STOP=1 -q -d postgres <<'SQL'
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'splice_dr_test') THEN
        CREATE ROLE splice_dr_test LOGIN SUPERUSER PASSWORD 'splice_dr_test';
    ELSE
        ALTER ROLE splice_dr_test LOGIN SUPERUSER PASSWORD 'splice_dr_test';
    END IF;
END
$$;
SQL
echo "postgres ready; test role splice_dr_test present"
