-- canonlog ceremonies: witnessed failover and the resume ceremony.
--
-- Two governance acts need more than an operator's word:
--   * failover moves a ledger's write grant to a different writer without a
--     clean hand-over (the old writer is gone or untrusted);
--   * resuming a halted ledger.
-- Each is a ceremony: an operator opens a proposal, witnesses (holders of the
-- ledger's active witness keys, canonlog.keys purpose 'witness') each sign a
-- versioned statement about it, and the ceremony executes once the threshold of
-- distinct witnesses is reached. Every step is a chained event in the "$ledger"
-- stream: canonlog.ceremony_proposed, canonlog.ceremony_approved, and finally
-- canonlog.writer_promoted or canonlog.resumed, which carry the signatures.
--
-- The statements are specified in docs/reference/ceremonies.md. PostgreSQL
-- cannot check Ed25519 signatures, so the operator tooling verifies each
-- signature before it records it and again before it executes; the database
-- checks everything else: the key is an active witness key of the ledger, one
-- approval per witness, the proposal still applies to the ledger's state, the
-- threshold, and the waiting period since a halt.
-- Error codes (class CL) are documented in docs/reference/sqlstates.md.

SET LOCAL ROLE canonlog_owner;

CREATE TABLE canonlog.ceremonies (
    ledger_id        text NOT NULL REFERENCES canonlog.ledgers (ledger_id),
    proposal_id      bigint NOT NULL CHECK (proposal_id >= 1),
    kind             text NOT NULL CHECK (kind IN ('failover', 'resume')),
    -- the grant when proposed
    writer_id        text,
    epoch            bigint NOT NULL,
    -- failover: the writer to promote, and the head when proposed
    target_writer_id text CHECK (char_length(target_writer_id) BETWEEN 1 AND 256),
    head_seq         bigint,
    head_hash        bytea CHECK (octet_length(head_hash) = 32),
    -- resume: the halt event the ceremony ends
    halt_seq         bigint,
    halt_hash        bytea CHECK (octet_length(halt_hash) = 32),
    proposed_by      text NOT NULL,
    proposed_seq     bigint NOT NULL,
    proposed_at      timestamptz NOT NULL,
    status           text NOT NULL DEFAULT 'open'
                     CHECK (status IN ('open', 'executed', 'superseded')),
    closed_seq       bigint,
    CONSTRAINT ceremonies_pkey PRIMARY KEY (ledger_id, proposal_id),
    CONSTRAINT ceremonies_fields_of_kind CHECK (
        (kind = 'failover' AND target_writer_id IS NOT NULL AND head_seq IS NOT NULL
         AND head_hash IS NOT NULL AND halt_seq IS NULL AND halt_hash IS NULL)
        OR (kind = 'resume' AND target_writer_id IS NULL AND head_seq IS NULL
            AND head_hash IS NULL AND halt_seq IS NOT NULL AND halt_hash IS NOT NULL)),
    CONSTRAINT ceremonies_closed_by_an_event CHECK ((status = 'open') = (closed_seq IS NULL))
);

-- One resume ceremony per halt.
CREATE UNIQUE INDEX ceremonies_one_resume_per_halt ON canonlog.ceremonies (ledger_id, halt_seq)
    WHERE kind = 'resume';

CREATE TABLE canonlog.approvals (
    ledger_id    text NOT NULL,
    proposal_id  bigint NOT NULL,
    key_id       text NOT NULL,
    signature    bytea NOT NULL CHECK (octet_length(signature) = 64),
    approved_by  text NOT NULL,
    approved_seq bigint NOT NULL,
    approved_at  timestamptz NOT NULL,
    CONSTRAINT approvals_pkey PRIMARY KEY (ledger_id, proposal_id, key_id),
    CONSTRAINT approvals_ceremony_fkey FOREIGN KEY (ledger_id, proposal_id)
        REFERENCES canonlog.ceremonies (ledger_id, proposal_id),
    CONSTRAINT approvals_key_fkey FOREIGN KEY (ledger_id, key_id)
        REFERENCES canonlog.keys (ledger_id, key_id)
);

-- A proposal's status changes (open -> executed or superseded) only through the
-- ceremony functions; approvals never change.
CREATE TRIGGER ceremonies_guard_write BEFORE INSERT OR UPDATE ON canonlog.ceremonies
    FOR EACH STATEMENT EXECUTE FUNCTION canonlog.guard_write_v1();
CREATE TRIGGER ceremonies_refuse_delete BEFORE DELETE ON canonlog.ceremonies
    FOR EACH ROW EXECUTE FUNCTION canonlog.refuse_delete_v1();
CREATE TRIGGER ceremonies_refuse_truncate BEFORE TRUNCATE ON canonlog.ceremonies
    FOR EACH STATEMENT EXECUTE FUNCTION canonlog.refuse_truncate_v1();

CREATE TRIGGER approvals_guard_insert BEFORE INSERT ON canonlog.approvals
    FOR EACH STATEMENT EXECUTE FUNCTION canonlog.guard_write_v1();
CREATE TRIGGER approvals_refuse_update BEFORE UPDATE ON canonlog.approvals
    FOR EACH ROW EXECUTE FUNCTION canonlog.refuse_update_v1();
CREATE TRIGGER approvals_refuse_delete BEFORE DELETE ON canonlog.approvals
    FOR EACH ROW EXECUTE FUNCTION canonlog.refuse_delete_v1();
CREATE TRIGGER approvals_refuse_truncate BEFORE TRUNCATE ON canonlog.approvals
    FOR EACH STATEMENT EXECUTE FUNCTION canonlog.refuse_truncate_v1();

-- ALWAYS: fire under session_replication_role = replica too.
ALTER TABLE canonlog.ceremonies ENABLE ALWAYS TRIGGER ceremonies_guard_write;
ALTER TABLE canonlog.ceremonies ENABLE ALWAYS TRIGGER ceremonies_refuse_delete;
ALTER TABLE canonlog.ceremonies ENABLE ALWAYS TRIGGER ceremonies_refuse_truncate;
ALTER TABLE canonlog.approvals ENABLE ALWAYS TRIGGER approvals_guard_insert;
ALTER TABLE canonlog.approvals ENABLE ALWAYS TRIGGER approvals_refuse_update;
ALTER TABLE canonlog.approvals ENABLE ALWAYS TRIGGER approvals_refuse_delete;
ALTER TABLE canonlog.approvals ENABLE ALWAYS TRIGGER approvals_refuse_truncate;

------------------------------------------------------------------------------
-- Helpers
------------------------------------------------------------------------------

-- "47h 59m 12s": how refusals state a duration.
CREATE FUNCTION canonlog.format_duration_v1(p_seconds bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $body$
SELECT format('%sh %sm %ss', p_seconds / 3600, p_seconds % 3600 / 60, p_seconds % 60)
$body$;

-- The approvals that count: those by keys that are still active witness keys,
-- as a JSON array ordered by key id, and the number of distinct witnesses
-- (owners) behind them. A witness holding two keys counts once.
CREATE FUNCTION canonlog.counted_approvals_v1(p_ledger text, p_proposal bigint,
                                               OUT approvals jsonb, OUT witnesses integer)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $body$
SELECT coalesce(jsonb_agg(jsonb_build_object('key_id', a.key_id, 'owner_id', k.owner_id,
                                             'signature', encode(a.signature, 'hex'))
                          ORDER BY a.key_id COLLATE "C"), '[]'::jsonb),
       count(DISTINCT k.owner_id)::integer
FROM canonlog.approvals a
JOIN canonlog.keys k ON k.ledger_id = a.ledger_id AND k.key_id = a.key_id
WHERE a.ledger_id = p_ledger AND a.proposal_id = p_proposal
  AND k.purpose = 'witness' AND k.revoked_seq IS NULL
$body$;

-- Refuses a proposal that is unknown, of another kind, closed, or no longer
-- about the ledger's current state (the grant moved, or the halt it would end
-- is over). The caller holds the ledger lock and passes the ledger row.
CREATE FUNCTION canonlog.open_ceremony_v1(p_ledger canonlog.ledgers, p_proposal bigint,
                                          p_kind text)
RETURNS canonlog.ceremonies
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    v_c canonlog.ceremonies;
    v_halt_seq bigint;
BEGIN
    SELECT * INTO v_c FROM canonlog.ceremonies c
    WHERE c.ledger_id = p_ledger.ledger_id AND c.proposal_id = p_proposal;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'CL030',
            MESSAGE = format('canonlog: ledger %s has no proposal %s', p_ledger.ledger_id, p_proposal);
    END IF;
    IF p_kind IS NOT NULL AND v_c.kind <> p_kind THEN
        RAISE EXCEPTION USING ERRCODE = 'CL031',
            MESSAGE = format('canonlog: proposal %s of ledger %s is a %s ceremony, not a %s ceremony',
                             p_proposal, p_ledger.ledger_id, v_c.kind, p_kind);
    END IF;
    IF v_c.status <> 'open' THEN
        RAISE EXCEPTION USING ERRCODE = 'CL031',
            MESSAGE = format('canonlog: proposal %s of ledger %s is %s (at sequence %s)',
                             p_proposal, p_ledger.ledger_id, v_c.status, v_c.closed_seq);
    END IF;
    IF v_c.kind = 'failover' THEN
        IF p_ledger.writer_id IS DISTINCT FROM v_c.writer_id OR p_ledger.epoch <> v_c.epoch THEN
            RAISE EXCEPTION USING ERRCODE = 'CL031',
                MESSAGE = format('canonlog: proposal %s of ledger %s was made against writer %s at '
                                 'epoch %s, but the grant is now held by %s at epoch %s',
                                 p_proposal, p_ledger.ledger_id, v_c.writer_id, v_c.epoch,
                                 coalesce(p_ledger.writer_id, 'nobody'), p_ledger.epoch);
        END IF;
    ELSE
        SELECT e.seq INTO v_halt_seq FROM canonlog.events e
        WHERE e.ledger_id = p_ledger.ledger_id AND e.stream_id = '$ledger'
          AND e.event_type = 'canonlog.halted'
        ORDER BY e.stream_version DESC LIMIT 1;
        IF NOT p_ledger.halted OR v_halt_seq IS DISTINCT FROM v_c.halt_seq THEN
            RAISE EXCEPTION USING ERRCODE = 'CL031',
                MESSAGE = format('canonlog: proposal %s of ledger %s would end the halt at sequence '
                                 '%s, which is over', p_proposal, p_ledger.ledger_id, v_c.halt_seq);
        END IF;
    END IF;
    RETURN v_c;
END
$body$;

CREATE FUNCTION canonlog.check_actor_v1(p_actor text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $body$
BEGIN
    IF p_actor IS NULL OR char_length(p_actor) NOT BETWEEN 1 AND 256 THEN
        RAISE EXCEPTION USING ERRCODE = 'CL020',
            MESSAGE = 'canonlog: the actor of a ceremony step must be 1 to 256 characters';
    END IF;
END
$body$;

------------------------------------------------------------------------------
-- Ceremony functions (operator role only)
------------------------------------------------------------------------------

-- Opens a failover ceremony: a proposal to move the grant of p_ledger from its
-- current holder to p_target, made against the current grant and head. Returns
-- the proposal id (1, 2, ... per ledger). A chained canonlog.ceremony_proposed.
CREATE FUNCTION canonlog.propose_failover_v1(p_ledger text, p_target text, p_actor text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    v_row canonlog.ledgers;
    v_head_seq bigint;
    v_head_hash bytea;
    v_id bigint;
    v_seq bigint;
BEGIN
    IF p_target IS NULL OR char_length(p_target) NOT BETWEEN 1 AND 256 THEN
        RAISE EXCEPTION USING ERRCODE = 'CL020',
            MESSAGE = 'canonlog: writer_id must be 1 to 256 characters';
    END IF;
    PERFORM canonlog.check_actor_v1(p_actor);
    v_row := canonlog.locked_ledger_v1(p_ledger);
    IF v_row.writer_id IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'CL031',
            MESSAGE = format('canonlog: the grant of ledger %s was released; writer %s takes it '
                             'when it starts, without a ceremony', p_ledger, p_target);
    END IF;
    IF v_row.writer_id = p_target THEN
        RAISE EXCEPTION USING ERRCODE = 'CL031',
            MESSAGE = format('canonlog: writer %s already holds the grant of ledger %s',
                             p_target, p_ledger);
    END IF;
    SELECT e.seq, e.hash INTO v_head_seq, v_head_hash
    FROM canonlog.events e WHERE e.ledger_id = p_ledger ORDER BY e.seq DESC LIMIT 1;
    SELECT coalesce(max(c.proposal_id), 0) + 1 INTO v_id
    FROM canonlog.ceremonies c WHERE c.ledger_id = p_ledger;
    v_seq := canonlog.append_system_v1(p_ledger, 'canonlog.ceremony_proposed',
        jsonb_build_object('proposal_id', v_id, 'kind', 'failover', 'target_writer_id', p_target,
                           'writer_id', v_row.writer_id, 'epoch', v_row.epoch,
                           'head_sequence', v_head_seq, 'head_hash', encode(v_head_hash, 'hex'),
                           'actor', p_actor),
        v_row.writer_id, v_row.epoch);
    PERFORM set_config('canonlog.append_guard', 'on', true);
    INSERT INTO canonlog.ceremonies (ledger_id, proposal_id, kind, writer_id, epoch,
                                     target_writer_id, head_seq, head_hash, proposed_by,
                                     proposed_seq, proposed_at)
    SELECT p_ledger, v_id, 'failover', v_row.writer_id, v_row.epoch, p_target, v_head_seq,
           v_head_hash, p_actor, v_seq, e.recorded_at
    FROM canonlog.events e WHERE e.ledger_id = p_ledger AND e.seq = v_seq;
    PERFORM set_config('canonlog.append_guard', 'off', true);
    RETURN v_id;
END
$body$;

-- Opens the resume ceremony of a halted ledger's current halt, or returns the
-- one already open: there is one per halt. A chained canonlog.ceremony_proposed
-- when it opens one.
CREATE FUNCTION canonlog.propose_resume_v1(p_ledger text, p_actor text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    v_row canonlog.ledgers;
    v_halt canonlog.events;
    v_id bigint;
    v_seq bigint;
BEGIN
    PERFORM canonlog.check_actor_v1(p_actor);
    v_row := canonlog.locked_ledger_v1(p_ledger);
    IF NOT v_row.halted THEN
        RAISE EXCEPTION USING ERRCODE = 'CL031',
            MESSAGE = format('canonlog: ledger %s is not halted', p_ledger);
    END IF;
    SELECT * INTO v_halt FROM canonlog.events e
    WHERE e.ledger_id = p_ledger AND e.stream_id = '$ledger' AND e.event_type = 'canonlog.halted'
    ORDER BY e.stream_version DESC LIMIT 1;
    SELECT c.proposal_id INTO v_id FROM canonlog.ceremonies c
    WHERE c.ledger_id = p_ledger AND c.kind = 'resume' AND c.halt_seq = v_halt.seq;
    IF FOUND THEN
        RETURN v_id;
    END IF;
    SELECT coalesce(max(c.proposal_id), 0) + 1 INTO v_id
    FROM canonlog.ceremonies c WHERE c.ledger_id = p_ledger;
    v_seq := canonlog.append_system_v1(p_ledger, 'canonlog.ceremony_proposed',
        jsonb_build_object('proposal_id', v_id, 'kind', 'resume', 'writer_id', v_row.writer_id,
                           'epoch', v_row.epoch, 'halt_sequence', v_halt.seq,
                           'halt_hash', encode(v_halt.hash, 'hex'), 'actor', p_actor),
        coalesce(v_row.writer_id, '-'), v_row.epoch);
    PERFORM set_config('canonlog.append_guard', 'on', true);
    INSERT INTO canonlog.ceremonies (ledger_id, proposal_id, kind, writer_id, epoch, halt_seq,
                                     halt_hash, proposed_by, proposed_seq, proposed_at)
    SELECT p_ledger, v_id, 'resume', v_row.writer_id, v_row.epoch, v_halt.seq, v_halt.hash,
           p_actor, v_seq, e.recorded_at
    FROM canonlog.events e WHERE e.ledger_id = p_ledger AND e.seq = v_seq;
    PERFORM set_config('canonlog.append_guard', 'off', true);
    RETURN v_id;
END
$body$;

-- Records a witness's approval of an open proposal: its Ed25519 signature over
-- the proposal's statement, by an active witness key of the ledger, one per
-- witness. The caller has verified the signature. Returns the sequence of the
-- chained canonlog.ceremony_approved event.
CREATE FUNCTION canonlog.approve_v1(p_ledger text, p_proposal bigint, p_key_id text,
                                    p_signature bytea, p_actor text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    v_row canonlog.ledgers;
    v_c canonlog.ceremonies;
    v_key canonlog.keys;
    v_other text;
    v_seq bigint;
BEGIN
    IF p_signature IS NULL OR octet_length(p_signature) <> 64 THEN
        RAISE EXCEPTION USING ERRCODE = 'CL020',
            MESSAGE = 'canonlog: an approval needs a 64-byte Ed25519 signature';
    END IF;
    PERFORM canonlog.check_actor_v1(p_actor);
    v_row := canonlog.locked_ledger_v1(p_ledger);
    v_c := canonlog.open_ceremony_v1(v_row, p_proposal, NULL);
    SELECT * INTO v_key FROM canonlog.keys k WHERE k.ledger_id = p_ledger AND k.key_id = p_key_id;
    IF NOT FOUND OR v_key.purpose <> 'witness' OR v_key.revoked_seq IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'CL032',
            MESSAGE = format('canonlog: key %s is not an active witness key of ledger %s',
                             p_key_id, p_ledger);
    END IF;
    SELECT a.key_id INTO v_other FROM canonlog.approvals a
    JOIN canonlog.keys k ON k.ledger_id = a.ledger_id AND k.key_id = a.key_id
    WHERE a.ledger_id = p_ledger AND a.proposal_id = p_proposal AND k.owner_id = v_key.owner_id
    ORDER BY a.key_id COLLATE "C" LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'CL032',
            MESSAGE = format('canonlog: witness %s has already approved proposal %s of ledger %s '
                             '(with key %s)', v_key.owner_id, p_proposal, p_ledger, v_other);
    END IF;
    v_seq := canonlog.append_system_v1(p_ledger, 'canonlog.ceremony_approved',
        jsonb_build_object('proposal_id', p_proposal, 'kind', v_c.kind, 'key_id', p_key_id,
                           'owner_id', v_key.owner_id, 'signature', encode(p_signature, 'hex'),
                           'actor', p_actor),
        coalesce(v_row.writer_id, '-'), v_row.epoch);
    PERFORM set_config('canonlog.append_guard', 'on', true);
    INSERT INTO canonlog.approvals (ledger_id, proposal_id, key_id, signature, approved_by,
                                    approved_seq, approved_at)
    SELECT p_ledger, p_proposal, p_key_id, p_signature, p_actor, v_seq, e.recorded_at
    FROM canonlog.events e WHERE e.ledger_id = p_ledger AND e.seq = v_seq;
    PERFORM set_config('canonlog.append_guard', 'off', true);
    RETURN v_seq;
END
$body$;

-- Executes an open failover proposal once at least p_threshold distinct
-- witnesses approved it with keys that are still active, and only while the
-- grant is still the one proposed against. Writes a chained
-- canonlog.writer_promoted event carrying the old grant, the head the witnesses
-- signed, the new writer and epoch and every counted signature, then moves the
-- grant: the old writer's next append is refused (CL011). Returns the new epoch;
-- the promoted writer starts as a restart of the holder.
CREATE FUNCTION canonlog.execute_failover_v1(p_ledger text, p_proposal bigint,
                                             p_threshold integer, p_actor text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    v_row canonlog.ledgers;
    v_c canonlog.ceremonies;
    v_approvals jsonb;
    v_witnesses integer;
    v_seq bigint;
BEGIN
    IF p_threshold IS NULL OR p_threshold < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'CL020',
            MESSAGE = 'canonlog: a ceremony needs a threshold of at least 1 witness';
    END IF;
    PERFORM canonlog.check_actor_v1(p_actor);
    v_row := canonlog.locked_ledger_v1(p_ledger);
    v_c := canonlog.open_ceremony_v1(v_row, p_proposal, 'failover');
    SELECT a.approvals, a.witnesses INTO v_approvals, v_witnesses
    FROM canonlog.counted_approvals_v1(p_ledger, p_proposal) a;
    IF v_witnesses < p_threshold THEN
        RAISE EXCEPTION USING ERRCODE = 'CL033',
            MESSAGE = format('canonlog: proposal %s of ledger %s has approvals from %s of the %s '
                             'witnesses it needs', p_proposal, p_ledger, v_witnesses, p_threshold);
    END IF;
    v_seq := canonlog.append_system_v1(p_ledger, 'canonlog.writer_promoted',
        jsonb_build_object('proposal_id', p_proposal, 'previous_writer_id', v_c.writer_id,
                           'previous_epoch', v_c.epoch, 'previous_head_sequence', v_c.head_seq,
                           'previous_head_hash', encode(v_c.head_hash, 'hex'),
                           'writer_id', v_c.target_writer_id, 'epoch', v_row.epoch + 1,
                           'approvals', v_approvals, 'threshold', p_threshold,
                           'statement', 'canonlog/ceremony/failover/v1', 'actor', p_actor),
        v_c.target_writer_id, v_row.epoch + 1);
    PERFORM set_config('canonlog.append_guard', 'on', true);
    UPDATE canonlog.ledgers SET writer_id = v_c.target_writer_id, epoch = v_row.epoch + 1
    WHERE ledger_id = p_ledger;
    UPDATE canonlog.ceremonies c
    SET status = CASE WHEN c.proposal_id = p_proposal THEN 'executed' ELSE 'superseded' END,
        closed_seq = v_seq
    WHERE c.ledger_id = p_ledger AND c.kind = 'failover' AND c.status = 'open';
    PERFORM set_config('canonlog.append_guard', 'off', true);
    RETURN v_row.epoch + 1;
END
$body$;

-- Resumes a halted ledger through its resume ceremony: refused until
-- p_min_wait_seconds have passed since the halt event was recorded, and until at
-- least p_threshold distinct witnesses approved with keys that are still active.
-- Then does what resume_v1 does, with the ceremony as the evidence of the
-- chained canonlog.resumed event. Returns that event's sequence.
CREATE FUNCTION canonlog.resume_ceremony_v1(p_ledger text, p_proposal bigint,
                                            p_threshold integer, p_min_wait_seconds bigint,
                                            p_actor text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    v_row canonlog.ledgers;
    v_c canonlog.ceremonies;
    v_halted_at timestamptz;
    v_left bigint;
    v_approvals jsonb;
    v_witnesses integer;
BEGIN
    IF p_threshold IS NULL OR p_threshold < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'CL020',
            MESSAGE = 'canonlog: a ceremony needs a threshold of at least 1 witness';
    END IF;
    IF p_min_wait_seconds IS NULL OR p_min_wait_seconds < 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'CL020',
            MESSAGE = 'canonlog: the waiting period must be 0 seconds or more';
    END IF;
    PERFORM canonlog.check_actor_v1(p_actor);
    v_row := canonlog.locked_ledger_v1(p_ledger);
    v_c := canonlog.open_ceremony_v1(v_row, p_proposal, 'resume');
    SELECT e.recorded_at INTO v_halted_at FROM canonlog.events e
    WHERE e.ledger_id = p_ledger AND e.seq = v_c.halt_seq;
    -- A wait of 0 resumes at once, even if the clock has stepped back since the halt.
    IF p_min_wait_seconds > 0
       AND clock_timestamp() < v_halted_at + make_interval(secs => p_min_wait_seconds) THEN
        v_left := greatest(1, ceil(extract(epoch FROM v_halted_at - clock_timestamp())
                                   + p_min_wait_seconds))::bigint;
        RAISE EXCEPTION USING ERRCODE = 'CL034',
            MESSAGE = format('canonlog: ledger %s was halted at sequence %s; resuming waits %s '
                             'after the halt, and %s remain',
                             p_ledger, v_c.halt_seq, canonlog.format_duration_v1(p_min_wait_seconds),
                             canonlog.format_duration_v1(v_left));
    END IF;
    SELECT a.approvals, a.witnesses INTO v_approvals, v_witnesses
    FROM canonlog.counted_approvals_v1(p_ledger, p_proposal) a;
    IF v_witnesses < p_threshold THEN
        RAISE EXCEPTION USING ERRCODE = 'CL033',
            MESSAGE = format('canonlog: proposal %s of ledger %s has approvals from %s of the %s '
                             'witnesses it needs', p_proposal, p_ledger, v_witnesses, p_threshold);
    END IF;
    PERFORM canonlog.resume_v1(p_ledger, p_actor,
        jsonb_build_object('proposal_id', p_proposal, 'halt_sequence', v_c.halt_seq,
                           'halt_hash', encode(v_c.halt_hash, 'hex'), 'approvals', v_approvals,
                           'threshold', p_threshold, 'min_wait_seconds', p_min_wait_seconds,
                           'statement', 'canonlog/ceremony/resume/v1'));
    PERFORM set_config('canonlog.append_guard', 'on', true);
    UPDATE canonlog.ceremonies c SET status = 'executed',
        closed_seq = (SELECT max(e.seq) FROM canonlog.events e WHERE e.ledger_id = p_ledger)
    WHERE c.ledger_id = p_ledger AND c.proposal_id = p_proposal;
    PERFORM set_config('canonlog.append_guard', 'off', true);
    RETURN (SELECT max(e.seq) FROM canonlog.events e WHERE e.ledger_id = p_ledger);
END
$body$;

REVOKE ALL ON canonlog.ceremonies, canonlog.approvals FROM PUBLIC;
GRANT SELECT ON canonlog.ceremonies, canonlog.approvals TO canonlog_operator;
REVOKE ALL ON FUNCTION canonlog.format_duration_v1(bigint),
    canonlog.counted_approvals_v1(text, bigint),
    canonlog.open_ceremony_v1(canonlog.ledgers, bigint, text),
    canonlog.check_actor_v1(text),
    canonlog.propose_failover_v1(text, text, text),
    canonlog.propose_resume_v1(text, text),
    canonlog.approve_v1(text, bigint, text, bytea, text),
    canonlog.execute_failover_v1(text, bigint, integer, text),
    canonlog.resume_ceremony_v1(text, bigint, integer, bigint, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION canonlog.propose_failover_v1(text, text, text),
    canonlog.propose_resume_v1(text, text),
    canonlog.approve_v1(text, bigint, text, bytea, text),
    canonlog.execute_failover_v1(text, bigint, integer, text),
    canonlog.resume_ceremony_v1(text, bigint, integer, bigint, text)
    TO canonlog_operator;
