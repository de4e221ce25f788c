#!/bin/sh
# Runs once, when the PostgreSQL container initialises its data directory: creates
# the service's application login (writes and reads; password
# CANONLOG_SERVICE_PASSWORD) and the operator's login, which ceremony proposals and
# approvals run on (password CANONLOG_OPERATOR_PASSWORD). canonlog's migrations, run
# by the service as the administrator, create the same roles if missing and grant
# them their rights; creating them here first only lets the logins join them now.
set -eu
psql -v ON_ERROR_STOP=1 -v password="$CANONLOG_SERVICE_PASSWORD" \
     -v operator_password="$CANONLOG_OPERATOR_PASSWORD" \
     --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
SELECT format('CREATE ROLE %I NOLOGIN', r)
  FROM unnest(ARRAY['canonlog_writer', 'canonlog_reader', 'canonlog_operator', 'canonlog_relay']) AS r
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) \gexec
CREATE ROLE canonlog_service LOGIN PASSWORD :'password' IN ROLE canonlog_writer, canonlog_reader, canonlog_relay;
CREATE ROLE canonlog_ops LOGIN PASSWORD :'operator_password' IN ROLE canonlog_operator, canonlog_reader;
SQL
