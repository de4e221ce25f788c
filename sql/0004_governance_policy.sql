-- canonlog governance policy: who the witnesses are, and what each ceremony needs.
--
-- A ledger's governance policy is chained in its "$ledger" stream and held in
-- canonlog.policies: the witness set (key id, owner, Ed25519 public key), the
-- threshold of each ceremony kind (failover, resume, policy), the waiting period
-- after a halt before it may be resumed, and the database roles whose members may
-- open proposals. It is established once by the administrator (genesis for a new
-- ledger, adoption for one created before policies existed: establish_policy_v1,
-- executable by no runtime role) and changed only by a policy ceremony that meets
-- the policy in force (propose_policy_v1, approve_v2, execute_policy_change_v1).
--
-- The ceremony functions of this file take no threshold and no waiting period:
-- both come from the stored policy. Witnesses are the policy's keys, each counted
-- once; an approval counts while the policy in force holds its key id with the
-- public key it was made under. The ceremony functions of sql/0003_ceremonies.sql
-- and add_key_v1 are taken from every role; agent keys are added with add_key_v2.
-- The statements and payloads are in docs/reference/ceremonies.md; error codes
-- (class CL) in docs/reference/sqlstates.md.

SET LOCAL ROLE canonlog_owner;

CREATE TABLE canonlog.policies (
    ledger_id      text NOT NULL REFERENCES canonlog.ledgers (ledger_id),
    -- the chained canonlog.policy_established or canonlog.policy_changed event
    policy_seq     bigint NOT NULL,
    policy         jsonb NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('genesis', 'adoption', 'change')),
    proposal_id    bigint,
    established_by text NOT NULL,
    established_at timestamptz NOT NULL,
    CONSTRAINT policies_pkey PRIMARY KEY (ledger_id, policy_seq),
    CONSTRAINT policies_change_has_proposal CHECK ((kind = 'change') = (proposal_id IS NOT NULL))
);

CREATE TRIGGER policies_guard_insert BEFORE INSERT ON canonlog.policies
    FOR EACH STATEMENT EXECUTE FUNCTION canonlog.guard_write_v1();
CREATE TRIGGER policies_refuse_update BEFORE UPDATE ON canonlog.policies
    FOR EACH ROW EXECUTE FUNCTION canonlog.refuse_update_v1();
CREATE TRIGGER policies_refuse_delete BEFORE DELETE ON canonlog.policies
    FOR EACH ROW EXECUTE FUNCTION canonlog.refuse_delete_v1();
CREATE TRIGGER policies_refuse_truncate BEFORE TRUNCATE ON canonlog.policies
    FOR EACH STATEMENT EXECUTE FUNCTION canonlog.refuse_truncate_v1();
ALTER TABLE canonlog.policies ENABLE ALWAYS TRIGGER policies_guard_insert;
ALTER TABLE canonlog.policies ENABLE ALWAYS TRIGGER policies_refuse_update;
ALTER TABLE canonlog.policies ENABLE ALWAYS TRIGGER policies_refuse_delete;
ALTER TABLE canonlog.policies ENABLE ALWAYS TRIGGER policies_refuse_truncate;

-- Policy ceremonies: the proposed policy, and the policy in force when proposed.
ALTER TABLE canonlog.ceremonies DROP CONSTRAINT ceremonies_kind_check;
ALTER TABLE canonlog.ceremonies DROP CONSTRAINT ceremonies_fields_of_kind;
ALTER TABLE canonlog.ceremonies ADD COLUMN policy jsonb, ADD COLUMN policy_seq bigint;
ALTER TABLE canonlog.ceremonies ADD CONSTRAINT ceremonies_kind_check
    CHECK (kind IN ('failover', 'resume', 'policy'));
ALTER TABLE canonlog.ceremonies ADD CONSTRAINT ceremonies_fields_of_kind CHECK (
    (kind = 'failover' AND target_writer_id IS NOT NULL AND head_seq IS NOT NULL
     AND head_hash IS NOT NULL AND halt_seq IS NULL AND halt_hash IS NULL AND policy IS NULL)
    OR (kind = 'resume' AND target_writer_id IS NULL AND head_seq IS NULL
        AND head_hash IS NULL AND halt_seq IS NOT NULL AND halt_hash IS NOT NULL
        AND policy IS NULL)
    OR (kind = 'policy' AND target_writer_id IS NULL AND head_seq IS NULL AND head_hash IS NULL
        AND halt_seq IS NULL AND halt_hash IS NULL AND policy IS NOT NULL
        AND policy_seq IS NOT NULL));

-- Witnesses are the policy's keys, not rows of canonlog.keys; an approval keeps the
-- public key it was made under (NULL for approvals recorded before policies).
ALTER TABLE canonlog.approvals DROP CONSTRAINT approvals_key_fkey;
ALTER TABLE canonlog.approvals ADD COLUMN public_key bytea
    CHECK (octet_length(public_key) = 32);

------------------------------------------------------------------------------
-- The policy document
------------------------------------------------------------------------------

-- What is wrong with a policy document, or NULL. A policy is
-- {"witnesses": [{"key_id", "owner_id", "public_key" (64 hex digits)}, ...],
--  "thresholds": {"failover", "resume", "policy"}, "resume_wait_seconds",
--  "proposers": [role, ...]}: key ids and public keys distinct, each threshold
-- from 1 to the number of witnesses, the wait 0 or more, at least one proposer.
CREATE FUNCTION canonlog.policy_problem_v1(p jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    v_n integer;
    v_w jsonb;
    v_kind text;
    v_t jsonb;
BEGIN
    IF p IS NULL OR jsonb_typeof(p) <> 'object'
       OR (SELECT array_agg(k ORDER BY k COLLATE "C") FROM jsonb_object_keys(p) AS x(k))
          IS DISTINCT FROM ARRAY['proposers', 'resume_wait_seconds', 'thresholds', 'witnesses'] THEN
        RETURN 'a policy is an object of witnesses, thresholds, resume_wait_seconds and proposers';
    END IF;
    IF jsonb_typeof(p->'witnesses') <> 'array' OR jsonb_array_length(p->'witnesses') = 0 THEN
        RETURN 'a policy needs at least one witness';
    END IF;
    FOR v_w IN SELECT w FROM jsonb_array_elements(p->'witnesses') AS x(w) LOOP
        IF jsonb_typeof(v_w) <> 'object'
           OR (SELECT array_agg(k ORDER BY k COLLATE "C") FROM jsonb_object_keys(v_w) AS x(k))
              IS DISTINCT FROM ARRAY['key_id', 'owner_id', 'public_key']
           OR jsonb_typeof(v_w->'key_id') <> 'string' OR jsonb_typeof(v_w->'owner_id') <> 'string'
           OR jsonb_typeof(v_w->'public_key') <> 'string'
           OR char_length(v_w->>'key_id') NOT BETWEEN 1 AND 256
           OR char_length(v_w->>'owner_id') NOT BETWEEN 1 AND 256
           OR (v_w->>'public_key') !~ '^[0-9a-f]{64}$' THEN
            RETURN 'a witness is a key_id and owner_id of 1 to 256 characters and a public_key '
                   'of 64 lowercase hex digits';
        END IF;
    END LOOP;
    v_n := jsonb_array_length(p->'witnesses');
    IF (SELECT count(DISTINCT w->>'key_id') FROM jsonb_array_elements(p->'witnesses') AS x(w)) <> v_n
       OR (SELECT count(DISTINCT w->>'public_key') FROM jsonb_array_elements(p->'witnesses') AS x(w))
          <> v_n THEN
        RETURN 'the witnesses of a policy have distinct key ids and distinct public keys';
    END IF;
    v_t := p->'thresholds';
    IF jsonb_typeof(v_t) <> 'object'
       OR (SELECT array_agg(k ORDER BY k COLLATE "C") FROM jsonb_object_keys(v_t) AS x(k))
          IS DISTINCT FROM ARRAY['failover', 'policy', 'resume'] THEN
        RETURN 'a policy has a threshold for failover, resume and policy';
    END IF;
    FOREACH v_kind IN ARRAY ARRAY['failover', 'resume', 'policy'] LOOP
        IF jsonb_typeof(v_t->v_kind) <> 'number' OR (v_t->>v_kind) !~ '^[0-9]+$'
           OR (v_t->>v_kind)::numeric NOT BETWEEN 1 AND v_n THEN
            RETURN format('the %s threshold must be a whole number from 1 to the %s witnesses',
                          v_kind, v_n);
        END IF;
    END LOOP;
    IF jsonb_typeof(p->'resume_wait_seconds') <> 'number'
       OR (p->>'resume_wait_seconds') !~ '^[0-9]+$'
       OR (p->>'resume_wait_seconds')::numeric > 9223372036 THEN
        RETURN 'resume_wait_seconds must be a whole number of seconds, 0 or more';
    END IF;
    IF jsonb_typeof(p->'proposers') <> 'array' OR jsonb_array_length(p->'proposers') = 0
       OR EXISTS (SELECT FROM jsonb_array_elements(p->'proposers') AS x(r)
                  WHERE jsonb_typeof(r) <> 'string' OR char_length(r #>> '{}') NOT BETWEEN 1 AND 63) THEN
        RETURN 'proposers must name at least one database role';
    END IF;
    RETURN NULL;
END
$body$;

-- A valid policy document in its one stored form: witnesses ordered by key id.
CREATE FUNCTION canonlog.checked_policy_v1(p jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    v_problem text := canonlog.policy_problem_v1(p);
BEGIN
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'CL020', MESSAGE = 'canonlog: ' || v_problem;
    END IF;
    RETURN jsonb_set(p, '{witnesses}', (
        SELECT jsonb_agg(w ORDER BY w->>'key_id' COLLATE "C")
        FROM jsonb_array_elements(p->'witnesses') AS x(w)));
END
$body$;

-- The policy in force (its row), or raises CL035 saying how to create one.
CREATE FUNCTION canonlog.policy_in_force_v1(p_ledger text) RETURNS canonlog.policies
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    v_p canonlog.policies;
BEGIN
    SELECT * INTO v_p FROM canonlog.policies p WHERE p.ledger_id = p_ledger
    ORDER BY p.policy_seq DESC LIMIT 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'CL035',
            MESSAGE = format('canonlog: ledger %s has no governance policy, so it runs no '
                             'ceremonies; the administrator establishes one with `canonlog '
                             'ledger adopt-policy --witness FILE ... --threshold N` '
                             '(docs/operations.md)', p_ledger);
    END IF;
    RETURN v_p;
END
$body$;

-- Refuses a session that is not a member of one of the policy's proposer roles.
CREATE FUNCTION canonlog.check_proposer_v1(p_policy jsonb) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $body$
BEGIN
    IF NOT EXISTS (SELECT FROM jsonb_array_elements_text(p_policy->'proposers') AS r(name)
                   JOIN pg_roles ro ON ro.rolname = r.name
                   WHERE pg_has_role(session_user, ro.oid, 'MEMBER')) THEN
        RAISE EXCEPTION USING ERRCODE = 'CL036',
            MESSAGE = format('canonlog: %s may not open a proposal; the policy lets members of '
                             '%s propose', session_user, p_policy->'proposers');
    END IF;
END
$body$;

-- The approvals of a proposal that count under p_policy: by a key id of its witness
-- set, made under that key's public key. As a JSON array ordered by key id, and how
-- many witnesses (keys) are behind them.
CREATE FUNCTION canonlog.counted_approvals_v2(p_ledger text, p_proposal bigint, p_policy jsonb,
                                               OUT approvals jsonb, OUT witnesses integer)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $body$
SELECT coalesce(jsonb_agg(jsonb_build_object('key_id', a.key_id, 'owner_id', w->>'owner_id',
                                             'signature', encode(a.signature, 'hex'))
                          ORDER BY a.key_id COLLATE "C"), '[]'::jsonb),
       count(*)::integer
FROM canonlog.approvals a
JOIN jsonb_array_elements(p_policy->'witnesses') AS x(w)
  ON w->>'key_id' = a.key_id AND decode(w->>'public_key', 'hex') = a.public_key
WHERE a.ledger_id = p_ledger AND a.proposal_id = p_proposal
$body$;

CREATE FUNCTION canonlog.check_threshold_v1(p_ledger text, p_proposal bigint, p_witnesses integer,
                                            p_threshold integer) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $body$
BEGIN
    IF p_witnesses < p_threshold THEN
        RAISE EXCEPTION USING ERRCODE = 'CL033',
            MESSAGE = format('canonlog: proposal %s of ledger %s has approvals from %s of the %s '
                             'witnesses it needs', p_proposal, p_ledger, p_witnesses, p_threshold);
    END IF;
END
$body$;

-- open_ceremony_v1, and a policy proposal applies only while the policy it was made
-- against is in force.
CREATE FUNCTION canonlog.open_ceremony_v2(p_ledger canonlog.ledgers, p_proposal bigint,
                                          p_kind text, p_policy canonlog.policies)
RETURNS canonlog.ceremonies
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    v_c canonlog.ceremonies;
BEGIN
    SELECT * INTO v_c FROM canonlog.ceremonies c
    WHERE c.ledger_id = p_ledger.ledger_id AND c.proposal_id = p_proposal;
    IF FOUND AND v_c.kind = 'policy' AND v_c.status = 'open'
       AND v_c.policy_seq <> p_policy.policy_seq THEN
        RAISE EXCEPTION USING ERRCODE = 'CL031',
            MESSAGE = format('canonlog: proposal %s of ledger %s would change the policy of '
                             'sequence %s, which is no longer in force', p_proposal,
                             p_ledger.ledger_id, v_c.policy_seq);
    END IF;
    IF FOUND AND v_c.kind = 'policy' AND v_c.status = 'open' THEN
        IF p_kind IS NOT NULL AND p_kind <> 'policy' THEN
            RAISE EXCEPTION USING ERRCODE = 'CL031',
                MESSAGE = format('canonlog: proposal %s of ledger %s is a policy ceremony, not a '
                                 '%s ceremony', p_proposal, p_ledger.ledger_id, p_kind);
        END IF;
        RETURN v_c;
    END IF;
    RETURN canonlog.open_ceremony_v1(p_ledger, p_proposal, p_kind);
END
$body$;

------------------------------------------------------------------------------
-- Establishing the policy (the administrator only)
------------------------------------------------------------------------------

-- Establishes the first policy of p_ledger, creating the ledger when it does not
-- exist ("genesis"), or giving a ledger created before policies its policy
-- ("adoption"). A chained canonlog.policy_established event; refused (CL037) when
-- the ledger has a policy already: changing it takes a policy ceremony. Returns
-- the event's sequence.
CREATE FUNCTION canonlog.establish_policy_v1(p_ledger text, p_policy jsonb, p_actor text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    v_row canonlog.ledgers;
    v_policy jsonb := canonlog.checked_policy_v1(p_policy);
    v_kind text;
    v_seq bigint;
BEGIN
    IF p_ledger IS NULL OR char_length(p_ledger) NOT BETWEEN 1 AND 256 THEN
        RAISE EXCEPTION USING ERRCODE = 'CL020',
            MESSAGE = 'canonlog: ledger_id must be 1 to 256 characters';
    END IF;
    PERFORM canonlog.check_actor_v1(p_actor);
    PERFORM canonlog.lock_ledger_v1(p_ledger);
    SELECT * INTO v_row FROM canonlog.ledgers WHERE ledger_id = p_ledger;
    IF NOT FOUND THEN
        PERFORM set_config('canonlog.append_guard', 'on', true);
        INSERT INTO canonlog.ledgers (ledger_id) VALUES (p_ledger) RETURNING * INTO v_row;
        PERFORM set_config('canonlog.append_guard', 'off', true);
    END IF;
    IF EXISTS (SELECT FROM canonlog.policies p WHERE p.ledger_id = p_ledger) THEN
        RAISE EXCEPTION USING ERRCODE = 'CL037',
            MESSAGE = format('canonlog: ledger %s has a governance policy already; it changes '
                             'only through a policy ceremony', p_ledger);
    END IF;
    v_kind := CASE WHEN EXISTS (SELECT FROM canonlog.events e WHERE e.ledger_id = p_ledger)
                   THEN 'adoption' ELSE 'genesis' END;
    v_seq := canonlog.append_system_v1(p_ledger, 'canonlog.policy_established',
        jsonb_build_object('kind', v_kind, 'policy', v_policy, 'actor', p_actor),
        coalesce(v_row.writer_id, '-'), v_row.epoch);
    PERFORM set_config('canonlog.append_guard', 'on', true);
    INSERT INTO canonlog.policies (ledger_id, policy_seq, policy, kind, established_by,
                                   established_at)
    SELECT p_ledger, v_seq, v_policy, v_kind, p_actor, e.recorded_at
    FROM canonlog.events e WHERE e.ledger_id = p_ledger AND e.seq = v_seq;
    PERFORM set_config('canonlog.append_guard', 'off', true);
    RETURN v_seq;
END
$body$;

------------------------------------------------------------------------------
-- Ceremony functions under the policy (operator role)
------------------------------------------------------------------------------

CREATE FUNCTION canonlog.propose_failover_v2(p_ledger text, p_target text, p_actor text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $body$
BEGIN
    PERFORM canonlog.locked_ledger_v1(p_ledger);
    PERFORM canonlog.check_proposer_v1((canonlog.policy_in_force_v1(p_ledger)).policy);
    RETURN canonlog.propose_failover_v1(p_ledger, p_target, p_actor);
END
$body$;

CREATE FUNCTION canonlog.propose_resume_v2(p_ledger text, p_actor text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $body$
BEGIN
    PERFORM canonlog.locked_ledger_v1(p_ledger);
    PERFORM canonlog.check_proposer_v1((canonlog.policy_in_force_v1(p_ledger)).policy);
    RETURN canonlog.propose_resume_v1(p_ledger, p_actor);
END
$body$;

-- Opens a policy ceremony: a proposal to replace the policy in force with
-- p_policy (a witness set, thresholds, wait and proposers). A chained
-- canonlog.ceremony_proposed holding the proposed policy and the sequence of the
-- policy in force. Returns the proposal id.
CREATE FUNCTION canonlog.propose_policy_v1(p_ledger text, p_policy jsonb, p_actor text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    v_row canonlog.ledgers;
    v_in_force canonlog.policies;
    v_policy jsonb := canonlog.checked_policy_v1(p_policy);
    v_id bigint;
    v_seq bigint;
BEGIN
    PERFORM canonlog.check_actor_v1(p_actor);
    v_row := canonlog.locked_ledger_v1(p_ledger);
    v_in_force := canonlog.policy_in_force_v1(p_ledger);
    PERFORM canonlog.check_proposer_v1(v_in_force.policy);
    SELECT coalesce(max(c.proposal_id), 0) + 1 INTO v_id
    FROM canonlog.ceremonies c WHERE c.ledger_id = p_ledger;
    v_seq := canonlog.append_system_v1(p_ledger, 'canonlog.ceremony_proposed',
        jsonb_build_object('proposal_id', v_id, 'kind', 'policy', 'policy', v_policy,
                           'policy_sequence', v_in_force.policy_seq, 'writer_id', v_row.writer_id,
                           'epoch', v_row.epoch, 'actor', p_actor),
        coalesce(v_row.writer_id, '-'), v_row.epoch);
    PERFORM set_config('canonlog.append_guard', 'on', true);
    INSERT INTO canonlog.ceremonies (ledger_id, proposal_id, kind, writer_id, epoch, policy,
                                     policy_seq, proposed_by, proposed_seq, proposed_at)
    SELECT p_ledger, v_id, 'policy', v_row.writer_id, v_row.epoch, v_policy,
           v_in_force.policy_seq, p_actor, v_seq, e.recorded_at
    FROM canonlog.events e WHERE e.ledger_id = p_ledger AND e.seq = v_seq;
    PERFORM set_config('canonlog.append_guard', 'off', true);
    RETURN v_id;
END
$body$;

-- Records a witness's approval of an open proposal: a signature over the proposal's
-- statement by a key of the policy in force, once per key. The database cannot
-- check Ed25519: the tooling verifies the signature before it submits it, and the
-- verifier checks every counted one. Returns the sequence of the chained
-- canonlog.ceremony_approved event.
CREATE FUNCTION canonlog.approve_v2(p_ledger text, p_proposal bigint, p_key_id text,
                                    p_signature bytea, p_actor text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    v_row canonlog.ledgers;
    v_policy canonlog.policies;
    v_c canonlog.ceremonies;
    v_w jsonb;
    v_seq bigint;
BEGIN
    IF p_signature IS NULL OR octet_length(p_signature) <> 64 THEN
        RAISE EXCEPTION USING ERRCODE = 'CL020',
            MESSAGE = 'canonlog: an approval needs a 64-byte Ed25519 signature';
    END IF;
    PERFORM canonlog.check_actor_v1(p_actor);
    v_row := canonlog.locked_ledger_v1(p_ledger);
    v_policy := canonlog.policy_in_force_v1(p_ledger);
    v_c := canonlog.open_ceremony_v2(v_row, p_proposal, NULL, v_policy);
    SELECT x.w INTO v_w FROM jsonb_array_elements(v_policy.policy->'witnesses') AS x(w)
    WHERE w->>'key_id' = p_key_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'CL032',
            MESSAGE = format('canonlog: key %s is not a witness key of the policy of ledger %s',
                             p_key_id, p_ledger);
    END IF;
    IF EXISTS (SELECT FROM canonlog.approvals a WHERE a.ledger_id = p_ledger
               AND a.proposal_id = p_proposal AND a.key_id = p_key_id) THEN
        RAISE EXCEPTION USING ERRCODE = 'CL032',
            MESSAGE = format('canonlog: key %s has already approved proposal %s of ledger %s',
                             p_key_id, p_proposal, p_ledger);
    END IF;
    v_seq := canonlog.append_system_v1(p_ledger, 'canonlog.ceremony_approved',
        jsonb_build_object('proposal_id', p_proposal, 'kind', v_c.kind, 'key_id', p_key_id,
                           'owner_id', v_w->>'owner_id', 'signature', encode(p_signature, 'hex'),
                           'actor', p_actor),
        coalesce(v_row.writer_id, '-'), v_row.epoch);
    PERFORM set_config('canonlog.append_guard', 'on', true);
    INSERT INTO canonlog.approvals (ledger_id, proposal_id, key_id, signature, approved_by,
                                    approved_seq, approved_at, public_key)
    SELECT p_ledger, p_proposal, p_key_id, p_signature, p_actor, v_seq, e.recorded_at,
           decode(v_w->>'public_key', 'hex')
    FROM canonlog.events e WHERE e.ledger_id = p_ledger AND e.seq = v_seq;
    PERFORM set_config('canonlog.append_guard', 'off', true);
    RETURN v_seq;
END
$body$;

-- Executes an open failover proposal once the policy's failover threshold of its
-- witnesses approved it; as execute_failover_v1 otherwise. Returns the new epoch.
CREATE FUNCTION canonlog.execute_failover_v2(p_ledger text, p_proposal bigint, p_actor text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    v_row canonlog.ledgers;
    v_policy canonlog.policies;
    v_threshold integer;
    v_c canonlog.ceremonies;
    v_approvals jsonb;
    v_witnesses integer;
    v_seq bigint;
BEGIN
    PERFORM canonlog.check_actor_v1(p_actor);
    v_row := canonlog.locked_ledger_v1(p_ledger);
    v_policy := canonlog.policy_in_force_v1(p_ledger);
    v_threshold := (v_policy.policy #>> '{thresholds,failover}')::integer;
    v_c := canonlog.open_ceremony_v1(v_row, p_proposal, 'failover');
    SELECT a.approvals, a.witnesses INTO v_approvals, v_witnesses
    FROM canonlog.counted_approvals_v2(p_ledger, p_proposal, v_policy.policy) a;
    PERFORM canonlog.check_threshold_v1(p_ledger, p_proposal, v_witnesses, v_threshold);
    v_seq := canonlog.append_system_v1(p_ledger, 'canonlog.writer_promoted',
        jsonb_build_object('proposal_id', p_proposal, 'previous_writer_id', v_c.writer_id,
                           'previous_epoch', v_c.epoch, 'previous_head_sequence', v_c.head_seq,
                           'previous_head_hash', encode(v_c.head_hash, 'hex'),
                           'writer_id', v_c.target_writer_id, 'epoch', v_row.epoch + 1,
                           'approvals', v_approvals, 'threshold', v_threshold,
                           'policy_sequence', v_policy.policy_seq,
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

-- Resumes a halted ledger through its resume ceremony once the policy's waiting
-- period since the halt is over and its resume threshold of witnesses approved.
-- Returns the sequence of the chained canonlog.resumed event.
CREATE FUNCTION canonlog.resume_ceremony_v2(p_ledger text, p_proposal bigint, p_actor text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    v_row canonlog.ledgers;
    v_policy canonlog.policies;
    v_threshold integer;
    v_wait bigint;
    v_c canonlog.ceremonies;
    v_halted_at timestamptz;
    v_left bigint;
    v_approvals jsonb;
    v_witnesses integer;
BEGIN
    PERFORM canonlog.check_actor_v1(p_actor);
    v_row := canonlog.locked_ledger_v1(p_ledger);
    v_policy := canonlog.policy_in_force_v1(p_ledger);
    v_threshold := (v_policy.policy #>> '{thresholds,resume}')::integer;
    v_wait := (v_policy.policy ->> 'resume_wait_seconds')::bigint;
    v_c := canonlog.open_ceremony_v1(v_row, p_proposal, 'resume');
    SELECT e.recorded_at INTO v_halted_at FROM canonlog.events e
    WHERE e.ledger_id = p_ledger AND e.seq = v_c.halt_seq;
    -- A wait of 0 resumes at once, even if the clock has stepped back since the halt.
    IF v_wait > 0 AND clock_timestamp() < v_halted_at + make_interval(secs => v_wait) THEN
        v_left := greatest(1, ceil(extract(epoch FROM v_halted_at - clock_timestamp())
                                   + v_wait))::bigint;
        RAISE EXCEPTION USING ERRCODE = 'CL034',
            MESSAGE = format('canonlog: ledger %s was halted at sequence %s; resuming waits %s '
                             'after the halt, and %s remain',
                             p_ledger, v_c.halt_seq, canonlog.format_duration_v1(v_wait),
                             canonlog.format_duration_v1(v_left));
    END IF;
    SELECT a.approvals, a.witnesses INTO v_approvals, v_witnesses
    FROM canonlog.counted_approvals_v2(p_ledger, p_proposal, v_policy.policy) a;
    PERFORM canonlog.check_threshold_v1(p_ledger, p_proposal, v_witnesses, v_threshold);
    PERFORM canonlog.resume_v1(p_ledger, p_actor,
        jsonb_build_object('proposal_id', p_proposal, 'halt_sequence', v_c.halt_seq,
                           'halt_hash', encode(v_c.halt_hash, 'hex'), 'approvals', v_approvals,
                           'threshold', v_threshold, 'min_wait_seconds', v_wait,
                           'policy_sequence', v_policy.policy_seq,
                           'statement', 'canonlog/ceremony/resume/v1'));
    PERFORM set_config('canonlog.append_guard', 'on', true);
    UPDATE canonlog.ceremonies c SET status = 'executed',
        closed_seq = (SELECT max(e.seq) FROM canonlog.events e WHERE e.ledger_id = p_ledger)
    WHERE c.ledger_id = p_ledger AND c.proposal_id = p_proposal;
    PERFORM set_config('canonlog.append_guard', 'off', true);
    RETURN (SELECT max(e.seq) FROM canonlog.events e WHERE e.ledger_id = p_ledger);
END
$body$;

-- Replaces the policy in force with a proposal's once the policy threshold of the
-- witnesses of the policy in force approved it. A chained canonlog.policy_changed
-- event carrying both policies' sequences, the new policy and every counted
-- signature; other open policy proposals are superseded. Returns its sequence.
CREATE FUNCTION canonlog.execute_policy_change_v1(p_ledger text, p_proposal bigint,
                                                  p_actor text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    v_row canonlog.ledgers;
    v_policy canonlog.policies;
    v_threshold integer;
    v_c canonlog.ceremonies;
    v_approvals jsonb;
    v_witnesses integer;
    v_seq bigint;
BEGIN
    PERFORM canonlog.check_actor_v1(p_actor);
    v_row := canonlog.locked_ledger_v1(p_ledger);
    v_policy := canonlog.policy_in_force_v1(p_ledger);
    v_threshold := (v_policy.policy #>> '{thresholds,policy}')::integer;
    v_c := canonlog.open_ceremony_v2(v_row, p_proposal, 'policy', v_policy);
    SELECT a.approvals, a.witnesses INTO v_approvals, v_witnesses
    FROM canonlog.counted_approvals_v2(p_ledger, p_proposal, v_policy.policy) a;
    PERFORM canonlog.check_threshold_v1(p_ledger, p_proposal, v_witnesses, v_threshold);
    v_seq := canonlog.append_system_v1(p_ledger, 'canonlog.policy_changed',
        jsonb_build_object('proposal_id', p_proposal, 'previous_policy_sequence',
                           v_policy.policy_seq, 'policy', v_c.policy, 'approvals', v_approvals,
                           'threshold', v_threshold, 'statement', 'canonlog/ceremony/policy/v1',
                           'actor', p_actor),
        coalesce(v_row.writer_id, '-'), v_row.epoch);
    PERFORM set_config('canonlog.append_guard', 'on', true);
    INSERT INTO canonlog.policies (ledger_id, policy_seq, policy, kind, proposal_id,
                                   established_by, established_at)
    SELECT p_ledger, v_seq, v_c.policy, 'change', p_proposal, p_actor, e.recorded_at
    FROM canonlog.events e WHERE e.ledger_id = p_ledger AND e.seq = v_seq;
    UPDATE canonlog.ceremonies c
    SET status = CASE WHEN c.proposal_id = p_proposal THEN 'executed' ELSE 'superseded' END,
        closed_seq = v_seq
    WHERE c.ledger_id = p_ledger AND c.kind = 'policy' AND c.status = 'open';
    PERFORM set_config('canonlog.append_guard', 'off', true);
    RETURN v_seq;
END
$body$;

-- add_key_v1 for agent keys only: witness keys are the policy's.
CREATE FUNCTION canonlog.add_key_v2(
    p_ledger text, p_key_id text, p_purpose text, p_owner text, p_public_key bytea, p_actor text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $body$
BEGIN
    IF p_purpose = 'witness' THEN
        RAISE EXCEPTION USING ERRCODE = 'CL020',
            MESSAGE = format('canonlog: witness keys of ledger %s are part of its governance '
                             'policy; they change only through a policy ceremony '
                             '(canonlog policy propose)', p_ledger);
    END IF;
    RETURN canonlog.add_key_v1(p_ledger, p_key_id, p_purpose, p_owner, p_public_key, p_actor);
END
$body$;

REVOKE ALL ON canonlog.policies FROM PUBLIC;
GRANT SELECT ON canonlog.policies TO canonlog_reader, canonlog_writer, canonlog_operator;
-- Verification reads what a ceremony recorded, so every runtime role reads them.
GRANT SELECT ON canonlog.ceremonies, canonlog.approvals TO canonlog_reader, canonlog_writer;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA canonlog FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION canonlog.propose_failover_v1(text, text, text),
    canonlog.propose_resume_v1(text, text),
    canonlog.approve_v1(text, bigint, text, bytea, text),
    canonlog.execute_failover_v1(text, bigint, integer, text),
    canonlog.resume_ceremony_v1(text, bigint, integer, bigint, text),
    canonlog.add_key_v1(text, text, text, text, bytea, text)
    FROM canonlog_operator, canonlog_writer, canonlog_reader;
GRANT EXECUTE ON FUNCTION canonlog.propose_failover_v2(text, text, text),
    canonlog.propose_resume_v2(text, text),
    canonlog.propose_policy_v1(text, jsonb, text),
    canonlog.approve_v2(text, bigint, text, bytea, text),
    canonlog.execute_failover_v2(text, bigint, text),
    canonlog.resume_ceremony_v2(text, bigint, text),
    canonlog.execute_policy_change_v1(text, bigint, text),
    canonlog.add_key_v2(text, text, text, text, bytea, text)
    TO canonlog_operator;
-- establish_policy_v1 is granted to no role: the administrator runs it.
