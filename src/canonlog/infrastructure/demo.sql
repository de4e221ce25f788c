-- The demo's own queries: the edits it tries on a recorded event (refused for
-- the runtime role and the table owner, done by a superuser who disables the
-- trigger) so that the verifier can catch them. $n placeholders, as in the
-- adapters' queries.sql.

-- name: demo_runtime_update
UPDATE canonlog.events SET payload = convert_to('{"amount":1}', 'UTF8') WHERE ledger_id = $1 AND seq = $2

-- name: demo_owner_update
SET ROLE canonlog_owner;
UPDATE canonlog.events SET payload = payload WHERE ledger_id = current_setting('canonlog.demo_ledger');

-- name: demo_superuser_tamper
ALTER TABLE canonlog.events DISABLE TRIGGER events_refuse_update;
UPDATE canonlog.events SET payload = convert_to('{"amount":1,"currency":"EUR","order":"order-1"}', 'UTF8')
WHERE ledger_id = current_setting('canonlog.demo_ledger') AND seq = current_setting('canonlog.demo_seq')::bigint;
ALTER TABLE canonlog.events ENABLE ALWAYS TRIGGER events_refuse_update;
