-- canonlog core schema: the trust boundary.
--
-- Everything that makes the log tamper-evident lives here, enforced by
-- PostgreSQL for every role but a superuser:
--   * events enter only through canonlog.append_v1 (SECURITY DEFINER); runtime
--     roles hold no INSERT privilege and a trigger refuses direct inserts;
--   * the sequence is gap-free and commit-ordered: appends to one ledger
--     serialise on a transaction-scoped advisory lock held through commit;
--   * the SHA-256 chain is computed here, by canonlog.event_hash_v1;
--   * UPDATE, DELETE and TRUNCATE are refused by triggers that fire ALWAYS,
--     so session_replication_role = replica does not silence them;
--   * writes carry the writer's grant (writer id + epoch) and are refused while
--     the ledger is halted.
-- Error codes (class CL) are documented in docs/reference/sqlstates.md.

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'canonlog_owner') THEN
        CREATE ROLE canonlog_owner NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'canonlog_reader') THEN
        CREATE ROLE canonlog_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'canonlog_writer') THEN
        CREATE ROLE canonlog_writer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'canonlog_operator') THEN
        CREATE ROLE canonlog_operator NOLOGIN;
    END IF;
END
$roles$;

ALTER SCHEMA canonlog OWNER TO canonlog_owner;
-- Writers check at startup that every migration is applied.
GRANT SELECT ON canonlog.schema_migrations TO canonlog_reader, canonlog_writer, canonlog_operator;
REVOKE ALL ON SCHEMA canonlog FROM PUBLIC;
GRANT USAGE ON SCHEMA canonlog TO canonlog_reader, canonlog_writer, canonlog_operator;

SET LOCAL ROLE canonlog_owner;

CREATE TABLE canonlog.ledgers (
    ledger_id   text PRIMARY KEY CHECK (char_length(ledger_id) BETWEEN 1 AND 256),
    writer_id   text,
    epoch       bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    halted      boolean NOT NULL DEFAULT false,
    halt_reason text,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE canonlog.events (
    -- No foreign key to ledgers and no CHECK constraints: canonlog.append_v1 and
    -- canonlog.append_system_v1 are the only writers and check every rule (names
    -- 1 to 256 characters, sequences and versions from 1, 32-byte hashes, a
    -- signature only with its key id) before they insert; constraint checks would
    -- run again for every row, while the ledger lock is held.
    ledger_id      text NOT NULL,
    seq            bigint NOT NULL,
    event_id       uuid NOT NULL,
    stream_id      text NOT NULL,
    stream_version bigint NOT NULL,
    event_type     text NOT NULL,
    payload        bytea NOT NULL,
    metadata       bytea NOT NULL,
    task_id        text,
    execution_id   text,
    correlation_id text,
    causation_id   text,
    agent_id       text,
    writer_id      text NOT NULL,
    epoch          bigint NOT NULL,
    writer_time    timestamptz,
    recorded_at    timestamptz NOT NULL,
    hash_version   smallint NOT NULL,
    prev_hash      bytea NOT NULL,
    hash           bytea NOT NULL,
    signing_key_id text,
    signature      bytea,
    CONSTRAINT events_pkey PRIMARY KEY (ledger_id, seq),
    CONSTRAINT events_stream_version_key UNIQUE (ledger_id, stream_id, stream_version),
    CONSTRAINT events_event_id_key UNIQUE (event_id)
);

-- The idempotency record: one row per execution id and ledger, never expired.
CREATE TABLE canonlog.executions (
    ledger_id      text NOT NULL,
    execution_id   text NOT NULL,
    request_digest bytea NOT NULL CHECK (octet_length(request_digest) = 32),
    first_seq      bigint NOT NULL,
    event_count    integer NOT NULL CHECK (event_count >= 1),
    CONSTRAINT executions_pkey PRIMARY KEY (ledger_id, execution_id)
);

-- Public keys of agents (who sign events) and witnesses (who approve ceremonies
-- and cosign checkpoints). Added and revoked only through chained events.
CREATE TABLE canonlog.keys (
    ledger_id   text NOT NULL REFERENCES canonlog.ledgers (ledger_id),
    key_id      text NOT NULL CHECK (char_length(key_id) BETWEEN 1 AND 256),
    purpose     text NOT NULL CHECK (purpose IN ('agent', 'witness')),
    owner_id    text NOT NULL CHECK (char_length(owner_id) BETWEEN 1 AND 256),
    public_key  bytea NOT NULL CHECK (octet_length(public_key) = 32),
    added_seq   bigint NOT NULL,
    added_at    timestamptz NOT NULL,
    revoked_seq bigint,
    revoked_at  timestamptz,
    CONSTRAINT keys_pkey PRIMARY KEY (ledger_id, key_id)
);

-- Decoded payloads for queries; what is hashed is the stored bytes.
CREATE VIEW canonlog.events_json AS
SELECT ledger_id, seq, event_id, stream_id, stream_version, event_type,
       convert_from(payload, 'UTF8')::jsonb AS payload,
       convert_from(metadata, 'UTF8')::jsonb AS metadata,
       task_id, execution_id, correlation_id, causation_id, agent_id,
       writer_id, epoch, writer_time, recorded_at
FROM canonlog.events;

------------------------------------------------------------------------------
-- Integrity triggers
------------------------------------------------------------------------------

CREATE FUNCTION canonlog.refuse_update_v1() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $body$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'CL001',
        MESSAGE = format('canonlog: %s.%s is append-only; UPDATE refused',
                         TG_TABLE_SCHEMA, TG_TABLE_NAME);
END
$body$;

CREATE FUNCTION canonlog.refuse_delete_v1() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $body$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'CL002',
        MESSAGE = format('canonlog: %s.%s is append-only; DELETE refused',
                         TG_TABLE_SCHEMA, TG_TABLE_NAME);
END
$body$;

CREATE FUNCTION canonlog.refuse_truncate_v1() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $body$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'CL003',
        MESSAGE = format('canonlog: %s.%s is append-only; TRUNCATE refused',
                         TG_TABLE_SCHEMA, TG_TABLE_NAME);
END
$body$;

-- Statement-level, so it costs one call per INSERT statement, not per row. The
-- append functions set the transaction-local flag around their own INSERTs;
-- only the owner and superusers hold INSERT at all.
CREATE FUNCTION canonlog.guard_write_v1() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $body$
BEGIN
    IF current_setting('canonlog.append_guard', true) IS DISTINCT FROM 'on' THEN
        RAISE EXCEPTION USING ERRCODE = 'CL004',
            MESSAGE = format('canonlog: %s on %s.%s refused; writes go through the canonlog functions',
                             TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME);
    END IF;
    RETURN NULL;
END
$body$;

CREATE TRIGGER events_guard_insert BEFORE INSERT ON canonlog.events
    FOR EACH STATEMENT EXECUTE FUNCTION canonlog.guard_write_v1();
CREATE TRIGGER events_refuse_update BEFORE UPDATE ON canonlog.events
    FOR EACH ROW EXECUTE FUNCTION canonlog.refuse_update_v1();
CREATE TRIGGER events_refuse_delete BEFORE DELETE ON canonlog.events
    FOR EACH ROW EXECUTE FUNCTION canonlog.refuse_delete_v1();
CREATE TRIGGER events_refuse_truncate BEFORE TRUNCATE ON canonlog.events
    FOR EACH STATEMENT EXECUTE FUNCTION canonlog.refuse_truncate_v1();

CREATE TRIGGER executions_guard_insert BEFORE INSERT ON canonlog.executions
    FOR EACH STATEMENT EXECUTE FUNCTION canonlog.guard_write_v1();
CREATE TRIGGER executions_refuse_update BEFORE UPDATE ON canonlog.executions
    FOR EACH ROW EXECUTE FUNCTION canonlog.refuse_update_v1();
CREATE TRIGGER executions_refuse_delete BEFORE DELETE ON canonlog.executions
    FOR EACH ROW EXECUTE FUNCTION canonlog.refuse_delete_v1();
CREATE TRIGGER executions_refuse_truncate BEFORE TRUNCATE ON canonlog.executions
    FOR EACH STATEMENT EXECUTE FUNCTION canonlog.refuse_truncate_v1();

CREATE TRIGGER keys_guard_write BEFORE INSERT OR UPDATE ON canonlog.keys
    FOR EACH STATEMENT EXECUTE FUNCTION canonlog.guard_write_v1();
CREATE TRIGGER keys_refuse_delete BEFORE DELETE ON canonlog.keys
    FOR EACH ROW EXECUTE FUNCTION canonlog.refuse_delete_v1();
CREATE TRIGGER keys_refuse_truncate BEFORE TRUNCATE ON canonlog.keys
    FOR EACH STATEMENT EXECUTE FUNCTION canonlog.refuse_truncate_v1();

-- Ledger rows change (grant, halt) but only through the governance functions.
CREATE TRIGGER ledgers_guard_write BEFORE INSERT OR UPDATE ON canonlog.ledgers
    FOR EACH STATEMENT EXECUTE FUNCTION canonlog.guard_write_v1();
CREATE TRIGGER ledgers_refuse_delete BEFORE DELETE ON canonlog.ledgers
    FOR EACH ROW EXECUTE FUNCTION canonlog.refuse_delete_v1();
CREATE TRIGGER ledgers_refuse_truncate BEFORE TRUNCATE ON canonlog.ledgers
    FOR EACH STATEMENT EXECUTE FUNCTION canonlog.refuse_truncate_v1();

-- ALWAYS: fire under session_replication_role = replica too.
ALTER TABLE canonlog.events ENABLE ALWAYS TRIGGER events_guard_insert;
ALTER TABLE canonlog.events ENABLE ALWAYS TRIGGER events_refuse_update;
ALTER TABLE canonlog.events ENABLE ALWAYS TRIGGER events_refuse_delete;
ALTER TABLE canonlog.events ENABLE ALWAYS TRIGGER events_refuse_truncate;
ALTER TABLE canonlog.executions ENABLE ALWAYS TRIGGER executions_guard_insert;
ALTER TABLE canonlog.executions ENABLE ALWAYS TRIGGER executions_refuse_update;
ALTER TABLE canonlog.executions ENABLE ALWAYS TRIGGER executions_refuse_delete;
ALTER TABLE canonlog.executions ENABLE ALWAYS TRIGGER executions_refuse_truncate;
ALTER TABLE canonlog.keys ENABLE ALWAYS TRIGGER keys_guard_write;
ALTER TABLE canonlog.keys ENABLE ALWAYS TRIGGER keys_refuse_delete;
ALTER TABLE canonlog.keys ENABLE ALWAYS TRIGGER keys_refuse_truncate;
ALTER TABLE canonlog.ledgers ENABLE ALWAYS TRIGGER ledgers_guard_write;
ALTER TABLE canonlog.ledgers ENABLE ALWAYS TRIGGER ledgers_refuse_delete;
ALTER TABLE canonlog.ledgers ENABLE ALWAYS TRIGGER ledgers_refuse_truncate;

------------------------------------------------------------------------------
-- Hash specification, version 1 (docs/reference/hash-spec.md)
------------------------------------------------------------------------------

-- text(s) = u32(len(utf8(s))) || utf8(s)
CREATE FUNCTION canonlog.frame_text_v1(p text) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
AS $body$
SELECT int4send(octet_length(convert_to(p, 'UTF8'))) || convert_to(p, 'UTF8')
$body$;

-- opt(text(s)) = 0x00 when absent, 0x01 || text(s) when present
CREATE FUNCTION canonlog.frame_opt_text_v1(p text) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
AS $body$
SELECT CASE WHEN p IS NULL THEN '\x00'::bytea
            ELSE '\x01'::bytea || int4send(octet_length(convert_to(p, 'UTF8')))
                 || convert_to(p, 'UTF8') END
$body$;

-- time(t) = i64(microseconds since the Unix epoch)
CREATE FUNCTION canonlog.frame_time_v1(p timestamptz) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
AS $body$
SELECT int8send((extract(epoch FROM p) * 1000000)::bigint)
$body$;

CREATE FUNCTION canonlog.event_hash_v1(
    p_ledger text, p_seq bigint, p_event_id uuid, p_stream text, p_version bigint,
    p_type text, p_payload bytea, p_metadata bytea, p_task text, p_execution text,
    p_correlation text, p_causation text, p_agent text, p_writer text, p_epoch bigint,
    p_writer_time timestamptz, p_recorded_at timestamptz, p_signing_key_id text,
    p_signature bytea, p_prev_hash bytea)
RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
AS $body$
SELECT sha256(
    canonlog.frame_text_v1('canonlog/event/v1')
    || canonlog.frame_text_v1(p_ledger)
    || int8send(p_seq)
    || uuid_send(p_event_id)
    || canonlog.frame_text_v1(p_stream)
    || int8send(p_version)
    || canonlog.frame_text_v1(p_type)
    || int4send(octet_length(p_payload)) || p_payload
    || int4send(octet_length(p_metadata)) || p_metadata
    || canonlog.frame_opt_text_v1(p_task)
    || canonlog.frame_opt_text_v1(p_execution)
    || canonlog.frame_opt_text_v1(p_correlation)
    || canonlog.frame_opt_text_v1(p_causation)
    || canonlog.frame_opt_text_v1(p_agent)
    || canonlog.frame_text_v1(p_writer)
    || int8send(p_epoch)
    || CASE WHEN p_writer_time IS NULL THEN '\x00'::bytea
            ELSE '\x01'::bytea || canonlog.frame_time_v1(p_writer_time) END
    || canonlog.frame_time_v1(p_recorded_at)
    || canonlog.frame_opt_text_v1(p_signing_key_id)
    || CASE WHEN p_signature IS NULL THEN '\x00'::bytea
            ELSE '\x01'::bytea || int4send(octet_length(p_signature)) || p_signature END
    || p_prev_hash)
$body$;

-- Canonical JSON v1 of a jsonb value, for the payloads the database writes
-- itself: keys in code point order (byte order of UTF-8, hence COLLATE "C"), no
-- whitespace, strings escaped as to_json escapes them (the minimal RFC 8259
-- escapes). Numbers keep jsonb's rendering, which equals canonical JSON v1 for
-- integers; governance payloads hold integers, strings, booleans and null.
CREATE FUNCTION canonlog.canonical_json_v1(p jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    v_text text;
BEGIN
    CASE jsonb_typeof(p)
        WHEN 'object' THEN
            SELECT '{' || coalesce(string_agg(to_json(e.k)::text || ':' || canonlog.canonical_json_v1(e.v),
                                              ',' ORDER BY e.k COLLATE "C"), '') || '}'
            INTO v_text FROM jsonb_each(p) AS e(k, v);
        WHEN 'array' THEN
            SELECT '[' || coalesce(string_agg(canonlog.canonical_json_v1(a.v), ',' ORDER BY a.i), '') || ']'
            INTO v_text FROM jsonb_array_elements(p) WITH ORDINALITY AS a(v, i);
        WHEN 'string' THEN
            v_text := to_json(p #>> '{}')::text;
        ELSE
            v_text := p::text;
    END CASE;
    RETURN v_text;
END
$body$;

------------------------------------------------------------------------------
-- Governance: ledger creation, grants, halt and resume. Each is a chained
-- event in the ledger's "$ledger" stream.
------------------------------------------------------------------------------

-- Appends one governance event. The caller holds the ledger's advisory lock and
-- has already decided the event is allowed. Not executable by runtime roles.
CREATE FUNCTION canonlog.append_system_v1(
    p_ledger text, p_type text, p_payload jsonb, p_writer text, p_epoch bigint)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    v_seq bigint;
    v_prev bytea;
    v_prev_at timestamptz;
    v_version bigint;
    v_now timestamptz;
    v_id uuid := gen_random_uuid();
    v_payload bytea := convert_to(canonlog.canonical_json_v1(p_payload), 'UTF8');
BEGIN
    SELECT e.seq, e.hash, e.recorded_at INTO v_seq, v_prev, v_prev_at
    FROM canonlog.events e WHERE e.ledger_id = p_ledger ORDER BY e.seq DESC LIMIT 1;
    IF NOT FOUND THEN
        v_seq := 0;
        v_prev := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
        v_prev_at := '-infinity';
    END IF;
    SELECT coalesce(max(e.stream_version), 0) INTO v_version
    FROM canonlog.events e WHERE e.ledger_id = p_ledger AND e.stream_id = '$ledger';
    v_now := greatest(clock_timestamp(), v_prev_at);
    PERFORM set_config('canonlog.append_guard', 'on', true);
    INSERT INTO canonlog.events (
        ledger_id, seq, event_id, stream_id, stream_version, event_type, payload, metadata,
        writer_id, epoch, recorded_at, hash_version, prev_hash, hash)
    VALUES (
        p_ledger, v_seq + 1, v_id, '$ledger', v_version + 1, p_type, v_payload, '\x7b7d'::bytea,
        p_writer, p_epoch, v_now, 1, v_prev,
        canonlog.event_hash_v1(p_ledger, v_seq + 1, v_id, '$ledger', v_version + 1, p_type,
                               v_payload, '\x7b7d'::bytea, NULL, NULL, NULL, NULL, NULL,
                               p_writer, p_epoch, NULL, v_now, NULL, NULL, v_prev));
    PERFORM set_config('canonlog.append_guard', 'off', true);
    RETURN v_seq + 1;
END
$body$;

CREATE FUNCTION canonlog.lock_ledger_v1(p_ledger text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $body$
BEGIN
    -- A reader that sees sequence N must be able to treat N as final, so no
    -- transaction may take N+1 before N is committed and visible. The lock is
    -- released after commit (https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS),
    -- and under READ COMMITTED each later statement sees the newest head.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION USING ERRCODE = 'CL016',
            MESSAGE = format('canonlog: appends run only under READ COMMITTED, not %s',
                             current_setting('transaction_isolation'));
    END IF;
    PERFORM pg_advisory_xact_lock(1668050791, hashtext(p_ledger));
END
$body$;

-- Locks an existing ledger as lock_ledger_v1 does and returns its row;
-- raises CL015 when the ledger does not exist.
CREATE FUNCTION canonlog.locked_ledger_v1(p_ledger text) RETURNS canonlog.ledgers
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    v_row canonlog.ledgers;
BEGIN
    PERFORM canonlog.lock_ledger_v1(p_ledger);
    SELECT * INTO v_row FROM canonlog.ledgers WHERE ledger_id = p_ledger;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'CL015',
            MESSAGE = format('canonlog: ledger %s does not exist', p_ledger);
    END IF;
    RETURN v_row;
END
$body$;

-- Takes the ledger's grant for p_writer: a new ledger, a released grant, or the
-- same writer restarting (which fences its former self with a higher epoch).
-- Returns the new epoch. Any other holder keeps the grant: moving it needs a
-- witnessed failover ceremony.
CREATE FUNCTION canonlog.acquire_grant_v1(p_ledger text, p_writer text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    v_row canonlog.ledgers;
    v_kind text;
BEGIN
    IF p_writer IS NULL OR char_length(p_writer) NOT BETWEEN 1 AND 256 THEN
        RAISE EXCEPTION USING ERRCODE = 'CL020',
            MESSAGE = 'canonlog: writer_id must be 1 to 256 characters';
    END IF;
    PERFORM canonlog.lock_ledger_v1(p_ledger);
    SELECT * INTO v_row FROM canonlog.ledgers WHERE ledger_id = p_ledger;
    IF NOT FOUND THEN
        PERFORM set_config('canonlog.append_guard', 'on', true);
        INSERT INTO canonlog.ledgers (ledger_id) VALUES (p_ledger) RETURNING * INTO v_row;
        v_kind := 'genesis';
    ELSIF v_row.halted THEN
        RAISE EXCEPTION USING ERRCODE = 'CL012',
            MESSAGE = format('canonlog: ledger %s is halted: %s', p_ledger, v_row.halt_reason),
            DETAIL = v_row.halt_reason;
    ELSIF v_row.writer_id IS NULL THEN
        v_kind := 'hand-over';
    ELSIF v_row.writer_id = p_writer THEN
        v_kind := 'restart';
    ELSE
        RAISE EXCEPTION USING ERRCODE = 'CL014',
            MESSAGE = format('canonlog: ledger %s is granted to writer %s at epoch %s; '
                             'a different writer takes over only after a clean hand-over '
                             'or a witnessed failover ceremony',
                             p_ledger, v_row.writer_id, v_row.epoch);
    END IF;
    PERFORM set_config('canonlog.append_guard', 'on', true);
    UPDATE canonlog.ledgers SET writer_id = p_writer, epoch = v_row.epoch + 1
    WHERE ledger_id = p_ledger;
    PERFORM canonlog.append_system_v1(p_ledger, 'canonlog.writer_granted',
        jsonb_build_object('writer_id', p_writer, 'epoch', v_row.epoch + 1, 'kind', v_kind,
                           'previous_writer_id', v_row.writer_id, 'previous_epoch', v_row.epoch),
        p_writer, v_row.epoch + 1);
    RETURN v_row.epoch + 1;
END
$body$;

-- Gives the grant up cleanly, so that another writer may take it.
CREATE FUNCTION canonlog.release_grant_v1(p_ledger text, p_writer text, p_epoch bigint)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    v_row canonlog.ledgers;
BEGIN
    v_row := canonlog.locked_ledger_v1(p_ledger);
    IF v_row.writer_id IS DISTINCT FROM p_writer OR v_row.epoch <> p_epoch THEN
        RAISE EXCEPTION USING ERRCODE = 'CL011',
            MESSAGE = format('canonlog: writer %s at epoch %s does not hold the grant of ledger %s '
                             '(held by %s at epoch %s)',
                             p_writer, p_epoch, p_ledger, coalesce(v_row.writer_id, 'nobody'), v_row.epoch);
    END IF;
    IF v_row.halted THEN
        RAISE EXCEPTION USING ERRCODE = 'CL012',
            MESSAGE = format('canonlog: ledger %s is halted: %s', p_ledger, v_row.halt_reason),
            DETAIL = v_row.halt_reason;
    END IF;
    PERFORM canonlog.append_system_v1(p_ledger, 'canonlog.writer_released',
        jsonb_build_object('writer_id', p_writer, 'epoch', p_epoch), p_writer, p_epoch);
    PERFORM set_config('canonlog.append_guard', 'on', true);
    UPDATE canonlog.ledgers SET writer_id = NULL WHERE ledger_id = p_ledger;
    PERFORM set_config('canonlog.append_guard', 'off', true);
END
$body$;

-- Halts the ledger: a chained event, then every append is refused. Halting a
-- halted ledger changes nothing and returns false.
CREATE FUNCTION canonlog.halt_v1(p_ledger text, p_reason text, p_actor text)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    v_row canonlog.ledgers;
BEGIN
    IF p_reason IS NULL OR char_length(p_reason) NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION USING ERRCODE = 'CL020',
            MESSAGE = 'canonlog: a halt needs a reason of 1 to 1000 characters';
    END IF;
    v_row := canonlog.locked_ledger_v1(p_ledger);
    IF v_row.halted THEN
        RETURN false;
    END IF;
    PERFORM canonlog.append_system_v1(p_ledger, 'canonlog.halted',
        jsonb_build_object('reason', p_reason, 'actor', p_actor),
        coalesce(v_row.writer_id, '-'), v_row.epoch);
    PERFORM set_config('canonlog.append_guard', 'on', true);
    UPDATE canonlog.ledgers SET halted = true, halt_reason = p_reason WHERE ledger_id = p_ledger;
    PERFORM set_config('canonlog.append_guard', 'off', true);
    RETURN true;
END
$body$;

-- Resumes a halted ledger. No runtime role may call it (sql/0002_append_path.sql
-- grants it to nobody): it is the last step of canonlog.resume_ceremony_v1, which
-- runs as its owner once enough witnesses approved and the waiting period is over.
CREATE FUNCTION canonlog.resume_v1(p_ledger text, p_actor text, p_evidence jsonb)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    v_row canonlog.ledgers;
BEGIN
    v_row := canonlog.locked_ledger_v1(p_ledger);
    IF NOT v_row.halted THEN
        RETURN false;
    END IF;
    PERFORM canonlog.append_system_v1(p_ledger, 'canonlog.resumed',
        jsonb_build_object('actor', p_actor, 'evidence', coalesce(p_evidence, '{}'::jsonb),
                           'halt_reason', v_row.halt_reason),
        coalesce(v_row.writer_id, '-'), v_row.epoch);
    PERFORM set_config('canonlog.append_guard', 'on', true);
    UPDATE canonlog.ledgers SET halted = false, halt_reason = NULL WHERE ledger_id = p_ledger;
    PERFORM set_config('canonlog.append_guard', 'off', true);
    RETURN true;
END
$body$;

-- Registers a public key: an agent's (to sign events) or a witness's (to approve
-- ceremonies and cosign checkpoints). A chained canonlog.key_added event.
CREATE FUNCTION canonlog.add_key_v1(
    p_ledger text, p_key_id text, p_purpose text, p_owner text, p_public_key bytea, p_actor text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    v_row canonlog.ledgers;
    v_seq bigint;
BEGIN
    IF p_key_id IS NULL OR char_length(p_key_id) NOT BETWEEN 1 AND 256
       OR p_owner IS NULL OR char_length(p_owner) NOT BETWEEN 1 AND 256
       OR p_purpose IS NULL OR p_purpose NOT IN ('agent', 'witness')
       OR p_public_key IS NULL OR octet_length(p_public_key) <> 32 THEN
        RAISE EXCEPTION USING ERRCODE = 'CL020',
            MESSAGE = 'canonlog: a key needs an id and owner of 1 to 256 characters, '
                      'purpose agent or witness, and a 32-byte Ed25519 public key';
    END IF;
    v_row := canonlog.locked_ledger_v1(p_ledger);
    IF EXISTS (SELECT FROM canonlog.keys k WHERE k.ledger_id = p_ledger AND k.key_id = p_key_id) THEN
        RAISE EXCEPTION USING ERRCODE = 'CL020',
            MESSAGE = format('canonlog: key %s is already registered in ledger %s', p_key_id, p_ledger);
    END IF;
    v_seq := canonlog.append_system_v1(p_ledger, 'canonlog.key_added',
        jsonb_build_object('key_id', p_key_id, 'purpose', p_purpose, 'owner_id', p_owner,
                           'public_key', encode(p_public_key, 'hex'), 'actor', p_actor),
        coalesce(v_row.writer_id, '-'), v_row.epoch);
    PERFORM set_config('canonlog.append_guard', 'on', true);
    INSERT INTO canonlog.keys (ledger_id, key_id, purpose, owner_id, public_key, added_seq, added_at)
    SELECT p_ledger, p_key_id, p_purpose, p_owner, p_public_key, v_seq, e.recorded_at
    FROM canonlog.events e WHERE e.ledger_id = p_ledger AND e.seq = v_seq;
    PERFORM set_config('canonlog.append_guard', 'off', true);
    RETURN v_seq;
END
$body$;

-- Revokes a key from now on: a chained canonlog.key_revoked event. Events it
-- signed before stay valid; the append path refuses it afterwards.
CREATE FUNCTION canonlog.revoke_key_v1(p_ledger text, p_key_id text, p_actor text, p_reason text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    v_row canonlog.ledgers;
    v_key canonlog.keys;
    v_seq bigint;
BEGIN
    v_row := canonlog.locked_ledger_v1(p_ledger);
    SELECT * INTO v_key FROM canonlog.keys k WHERE k.ledger_id = p_ledger AND k.key_id = p_key_id;
    IF NOT FOUND OR v_key.revoked_seq IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'CL020',
            MESSAGE = format('canonlog: key %s is not an active key of ledger %s', p_key_id, p_ledger);
    END IF;
    v_seq := canonlog.append_system_v1(p_ledger, 'canonlog.key_revoked',
        jsonb_build_object('key_id', p_key_id, 'actor', p_actor, 'reason', p_reason),
        coalesce(v_row.writer_id, '-'), v_row.epoch);
    PERFORM set_config('canonlog.append_guard', 'on', true);
    UPDATE canonlog.keys k SET revoked_seq = v_seq,
        revoked_at = (SELECT e.recorded_at FROM canonlog.events e
                      WHERE e.ledger_id = p_ledger AND e.seq = v_seq)
    WHERE k.ledger_id = p_ledger AND k.key_id = p_key_id;
    PERFORM set_config('canonlog.append_guard', 'off', true);
    RETURN v_seq;
END
$body$;
