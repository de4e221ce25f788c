-- Named queries of the PostgreSQL adapters. $n placeholders run on asyncpg and
-- on psycopg's raw cursor alike.

-- name: append
SELECT * FROM canonlog.append_v2($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                                 $17, $18, $19, $20)

-- name: acquire_grant
SELECT canonlog.acquire_grant_v1($1, $2) AS epoch

-- name: release_grant
SELECT canonlog.release_grant_v1($1, $2, $3)

-- name: halt
SELECT canonlog.halt_v1($1, $2, $3) AS changed

-- name: add_key
SELECT canonlog.add_key_v2($1, $2, $3, $4, $5, $6) AS seq

-- name: revoke_key
SELECT canonlog.revoke_key_v1($1, $2, $3, $4) AS seq

-- name: list_keys
SELECT ledger_id, key_id, purpose, owner_id, public_key, added_seq, added_at, revoked_seq, revoked_at
FROM canonlog.keys WHERE ledger_id = $1 ORDER BY added_seq

-- name: ledger_state
SELECT ledger_id, writer_id, epoch, halted, halt_reason FROM canonlog.ledgers WHERE ledger_id = $1

-- name: head
SELECT seq, hash FROM canonlog.events WHERE ledger_id = $1 ORDER BY seq DESC LIMIT 1

-- name: read_all
SELECT * FROM canonlog.events WHERE ledger_id = $1 AND seq > $2 ORDER BY seq LIMIT $3

-- name: read_stream
SELECT * FROM canonlog.events
WHERE ledger_id = $1 AND stream_id = $2 AND stream_version >= $3
ORDER BY stream_version
LIMIT $4

-- name: read_execution
SELECT * FROM canonlog.read_execution_v1($1, $2)

-- name: migrations_bootstrap
CREATE SCHEMA IF NOT EXISTS canonlog;
CREATE TABLE IF NOT EXISTS canonlog.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- name: migrations_applied
SELECT version, name, checksum, applied_at FROM canonlog.schema_migrations ORDER BY version

-- name: migrations_record
INSERT INTO canonlog.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)

-- name: migrations_schema_exists
SELECT to_regclass('canonlog.schema_migrations') IS NOT NULL AS present

-- name: installed_triggers
SELECT c.relname AS table_name, t.tgname AS trigger_name, p.proname AS function_name,
       t.tgenabled::text AS enabled
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_proc p ON p.oid = t.tgfoid
WHERE n.nspname = 'canonlog' AND NOT t.tgisinternal

-- name: installed_functions
SELECT p.proname AS name, p.prosrc AS source, p.prosecdef AS security_definer,
       pg_get_userbyid(p.proowner) AS owner
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'canonlog'

-- name: table_owners
SELECT c.relname AS table_name, pg_get_userbyid(c.relowner) AS owner
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'canonlog' AND c.relkind IN ('r', 'v', 'p')

-- name: durability_settings
SELECT name, setting FROM pg_settings
WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes')

-- name: server_encoding
SELECT current_setting('server_encoding') AS encoding

-- name: server_version
SELECT current_setting('server_version_num')::integer AS number,
       current_setting('server_version') AS version

-- name: lease_try_lock
SELECT pg_try_advisory_lock($1::integer, hashtext($2)) AS acquired

-- name: lease_held
-- The two-integer form of an advisory lock shows in pg_locks as classid, objid
-- and objsubid = 2; the int4 keys appear reinterpreted as oid.
SELECT EXISTS (
    SELECT 1 FROM pg_locks
    WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
      AND classid = $1::integer::oid AND objid = hashtext($2)::oid AND objsubid = 2
) AS held

-- name: lease_unlock
SELECT pg_advisory_unlock($1::integer, hashtext($2)) AS released

-- name: establish_policy
SELECT canonlog.establish_policy_v1($1, $2::text::jsonb, $3) AS seq

-- name: propose_policy
SELECT canonlog.propose_policy_v1($1, $2::text::jsonb, $3) AS proposal_id

-- name: execute_policy_change
SELECT canonlog.execute_policy_change_v1($1, $2, $3) AS seq

-- name: policies
SELECT p.policy_seq, p.policy::text AS policy FROM canonlog.policies p
WHERE p.ledger_id = $1 ORDER BY p.policy_seq

-- name: propose_failover
SELECT canonlog.propose_failover_v2($1, $2, $3) AS proposal_id

-- name: propose_resume
SELECT canonlog.propose_resume_v2($1, $2) AS proposal_id

-- name: approve
SELECT canonlog.approve_v2($1, $2, $3, $4, $5) AS seq

-- name: execute_failover
SELECT canonlog.execute_failover_v2($1, $2, $3) AS epoch

-- name: resume_ceremony
SELECT canonlog.resume_ceremony_v2($1, $2, $3) AS seq

-- name: ceremonies
-- One row per approval (approval columns NULL for a proposal without any), so
-- proposals and approvals come from one snapshot. The owner of an approval's key is
-- the one its chained canonlog.ceremony_approved event names.
SELECT c.ledger_id, c.proposal_id, c.kind, c.status, c.writer_id, c.epoch, c.target_writer_id,
       c.head_seq, c.head_hash, c.halt_seq, c.halt_hash, c.proposed_by, c.proposed_seq,
       c.proposed_at, c.closed_seq, c.policy::text AS policy, c.policy_seq, a.key_id,
       convert_from(e.payload, 'UTF8')::jsonb ->> 'owner_id' AS owner_id, a.signature,
       a.approved_by, a.approved_seq, a.public_key
FROM canonlog.ceremonies c
LEFT JOIN canonlog.approvals a ON a.ledger_id = c.ledger_id AND a.proposal_id = c.proposal_id
LEFT JOIN canonlog.events e ON e.ledger_id = a.ledger_id AND e.seq = a.approved_seq
WHERE c.ledger_id = $1 AND ($2::bigint IS NULL OR c.proposal_id = $2::bigint)
ORDER BY c.proposal_id, a.key_id COLLATE "C"
