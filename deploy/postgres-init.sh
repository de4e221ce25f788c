#!/bin/sh
# Runs once, when the PostgreSQL container initialises its data directory: creates
# the service's login (password CANONLOG_SERVICE_PASSWORD) in canonlog's runtime
# roles. canonlog's migrations, run by the service as the administrator, create the
# same roles if missing and grant them their rights; creating them here first only
# lets the login join them now.
set -eu
psql -v ON_ERROR_STOP=1 -v password="$CANONLOG_SERVICE_PASSWORD" \
     --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
SELECT format('CREATE ROLE %I NOLOGIN', r)
  FROM unnest(ARRAY['canonlog_writer', 'canonlog_reader', 'canonlog_operator']) AS r
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) \gexec
CREATE ROLE canonlog_service LOGIN PASSWORD :'password'
    IN ROLE canonlog_writer, canonlog_reader, canonlog_operator;
SQL
