#!/usr/bin/env bash
# Start Debian's PostgreSQL on 127.0.0.1:5432 with a test role and database, installing it
# first if needed; prints the SQLAlchemy URL for the tests (POSTGRES_URL).
set -euo pipefail

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
version=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
if ! pg_lsclusters -h | awk '{print $1, $2}' | grep -q "^$version main$"; then
    pg_createcluster "$version" main >&2
fi
pg_ctlcluster "$version" main start >&2 2>/dev/null || true   # already running is fine
for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 1
done
su postgres -c "psql -q -v ON_ERROR_STOP=1" >&2 <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'nndl') THEN
    CREATE ROLE nndl LOGIN PASSWORD 'nndl';
  END IF;
END $$;
SQL
su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname = 'nndl_test'\"" | grep -q 1 \
    || su postgres -c "createdb -O nndl nndl_test" >&2
echo "postgresql+psycopg2://nndl:nndl@127.0.0.1:5432/nndl_test"
