-- canonlog.append_v1: the only way events enter a ledger.
--
-- One call appends a batch of requests. Each request targets one stream with an
-- optional expected version and an optional execution id, and carries one or
-- more events. Requests succeed or fail on their own: a conflicting request
-- writes nothing and takes no sequence number, while the others in the batch
-- are recorded. Failures of the whole call (halted, stale grant, malformed
-- arrays or payloads) raise and write nothing.
--
-- Expected version codes: NULL = any, -1 = the stream exists, 0 = no stream,
-- N >= 1 = the stream's last version is exactly N.
--
-- The result is one row. The recorded events take the sequences first_seq,
-- first_seq + 1, ... in request order, and all carry recorded_at; for each of
-- them, in that order, hashes holds its hash and event_ids its id (prev_hash is
-- the first one's previous hash, each later one's is the hash before it). Per
-- request, versions holds the stream version of its first recorded event, and
-- outcomes is NULL when every request was recorded; otherwise outcomes[i] is
-- NULL for a recorded request, 'conflict' (numbers[i] = the stream's version),
-- 'invalid' (details[i] = the reason), 'idempotency_conflict', or 'replayed'
-- (numbers[i] = the first sequence of the original events, which are the
-- request's count of events from there on).
--
-- The function is written for throughput: the ledger lock is held through the
-- commit's WAL flush, so whatever runs here runs while every other appender of
-- the ledger waits, and every statement and function call costs time, much of it
-- compiling expressions anew in each transaction. A single request is examined
-- with the head in one query and a single event framed in one expression; a
-- batch's requests are examined in one query and their events framed in
-- another. Only the chain itself (each hash covers the one before) is a loop.
-- Requests whose outcome depends on an earlier request of the batch (an
-- execution id, or an expected version on a stream that the batch appends to
-- twice) and events with ids or signatures of their own take a per-request loop
-- instead. Parts of the hash input shared by a request or the batch are framed
-- once. The statements use generic plans: custom ones would be planned anew on
-- every call, at a cost greater than running them.
--
-- p_known_seq and r_known_version are optional lower bounds, a sequence and
-- stream versions the caller has seen recorded. They only make the lookups of
-- the head and of stream versions cheaper; a wrong one costs an unbounded scan.

SET LOCAL ROLE canonlog_owner;

-- The parts of the event hash input (hash-spec.md) that append_v1 frames. Plain
-- SQL functions, so the planner inlines them into the statements that call them.

-- opt(text(task_id)) || .. || opt(text(agent_id)): the ids a request's events share.
-- Most appends carry none, and five absent ids are five zero bytes.
CREATE FUNCTION canonlog.frame_ids_v1(
    p_task text, p_execution text, p_correlation text, p_causation text, p_agent text)
RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
AS $body$
SELECT CASE WHEN p_task IS NULL AND p_execution IS NULL AND p_correlation IS NULL
                 AND p_causation IS NULL AND p_agent IS NULL THEN '\x0000000000'::bytea
            ELSE canonlog.frame_opt_text_v1(p_task) || canonlog.frame_opt_text_v1(p_execution)
                 || canonlog.frame_opt_text_v1(p_correlation)
                 || canonlog.frame_opt_text_v1(p_causation) || canonlog.frame_opt_text_v1(p_agent)
            END
$body$;

-- The whole hash input but the previous hash, from the framed prefix
-- (text(tag) || text(ledger_id)), stream id and context (the framed ids, writer id,
-- epoch, writer time and recorded_at).
CREATE FUNCTION canonlog.frame_event_v1(
    p_prefix bytea, p_seq bigint, p_event_id uuid, p_stream bytea, p_version bigint,
    p_type text, p_payload bytea, p_metadata bytea, p_context bytea, p_signing_key_id text,
    p_signature bytea)
RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
AS $body$
SELECT p_prefix || int8send(p_seq) || uuid_send(p_event_id) || p_stream || int8send(p_version)
    || canonlog.frame_text_v1(p_type)
    || int4send(octet_length(p_payload)) || p_payload
    || int4send(octet_length(p_metadata)) || p_metadata
    || p_context || canonlog.frame_opt_text_v1(p_signing_key_id)
    || CASE WHEN p_signature IS NULL THEN '\x00'::bytea
            ELSE '\x01'::bytea || int4send(octet_length(p_signature)) || p_signature END
$body$;

-- Whether stored bytes are a JSON object that jsonb can hold (events_json decodes
-- every payload). IS JSON checks the grammar in a third of the time jsonb takes to
-- build a value; what the grammar allows and jsonb refuses needs a \u escape
-- (U+0000, lone surrogates), an exponent beyond 1000 or a number of thousands of
-- digits, and such text goes through jsonb itself.
--
-- IS JSON is PostgreSQL 16 syntax. PostgreSQL 14 and 15 have no way to test JSON
-- text without raising, so there the same cases cast to json (which checks the
-- grammar only) in a block that turns the syntax error into false: the same answers
-- and the same errors, a subtransaction slower, in PL/pgSQL. Error recovery by
-- subtransaction is allowed in a PARALLEL SAFE function
-- (https://www.postgresql.org/docs/current/parallel-safety.html).
-- The statements run through EXECUTE, as a server parses only the one it runs.
DO $do$
BEGIN
    IF current_setting('server_version_num')::integer >= 160000 THEN
        EXECUTE $create$
CREATE FUNCTION canonlog.is_json_object_v1(p bytea) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $body$
SELECT p IS NOT NULL
       AND CASE WHEN octet_length(p) <= 15000 AND position('\x5c75'::bytea IN p) = 0
                     AND convert_from(p, 'UTF8') !~ '[eE][-+]?[0-9]{4}' THEN p IS JSON OBJECT
                ELSE jsonb_typeof(convert_from(p, 'UTF8')::jsonb) = 'object' END
$body$
$create$;
    ELSE
        EXECUTE $create$
CREATE FUNCTION canonlog.is_json_object_v1(p bytea) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $body$
BEGIN
    IF p IS NULL THEN
        RETURN false;
    END IF;
    IF octet_length(p) <= 15000 AND position('\x5c75'::bytea IN p) = 0
       AND convert_from(p, 'UTF8') !~ '[eE][-+]?[0-9]{4}' THEN
        BEGIN
            RETURN json_typeof(convert_from(p, 'UTF8')::json) = 'object';
        EXCEPTION WHEN invalid_text_representation THEN
            RETURN false;
        END;
    END IF;
    RETURN jsonb_typeof(convert_from(p, 'UTF8')::jsonb) = 'object';
END
$body$
$create$;
    END IF;
END
$do$;

-- What is wrong with a request on its own, or NULL.
CREATE FUNCTION canonlog.request_problem_v1(
    p_stream text, p_expected bigint, p_task text, p_execution text, p_correlation text,
    p_causation text, p_agent text)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $body$
SELECT CASE
    WHEN p_stream IS NULL OR char_length(p_stream) NOT BETWEEN 1 AND 256 THEN
        'stream_id must be 1 to 256 characters'
    WHEN left(p_stream, 1) = '$' THEN
        format('stream_id %s is reserved for the ledger''s own events', p_stream)
    WHEN p_expected < -1 THEN format('expected version %s is not a version', p_expected)
    WHEN char_length(p_task) NOT BETWEEN 1 AND 256 OR char_length(p_execution) NOT BETWEEN 1 AND 256
         OR char_length(p_correlation) NOT BETWEEN 1 AND 256
         OR char_length(p_causation) NOT BETWEEN 1 AND 256
         OR char_length(p_agent) NOT BETWEEN 1 AND 256 THEN
        'task, execution, correlation, causation and agent ids must be 1 to 256 characters'
    END
$body$;

CREATE FUNCTION canonlog.append_v1(
    p_ledger text, p_writer text, p_epoch bigint, p_known_seq bigint,
    r_stream text[], r_expected bigint[], r_known_version bigint[], r_count integer[],
    r_task text[], r_execution text[], r_correlation text[], r_causation text[],
    r_agent text[], r_writer_time timestamptz[],
    e_event_id uuid[], e_type text[], e_payload bytea[], e_metadata bytea[],
    e_signing_key_id text[], e_signature bytea[],
    OUT first_seq bigint, OUT recorded_at timestamptz, OUT prev_hash bytea, OUT hashes bytea[],
    OUT event_ids uuid[], OUT versions bigint[], OUT outcomes text[], OUT details text[],
    OUT numbers bigint[])
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $body$
DECLARE
    n_req integer := coalesce(cardinality(r_stream), 0);
    n_ev integer := coalesce(cardinality(e_type), 0);
    v_halted boolean;
    v_reason text;
    v_holder text;
    v_holder_epoch bigint;
    v_seq bigint;
    v_prev bytea;
    v_prev_at timestamptz;
    v_now_at timestamptz;
    v_prefix bytea;
    v_writer bytea;
    v_now bytea;
    v_base bigint;
    v_total bigint;
    v_counts_ok boolean;
    v_bad integer;
    v_types_ok boolean;
    v_special boolean;
    v_general boolean;
    v_refused boolean;
    -- per request: its first event and first sequence, its stream's ordinal in the
    -- batch and version before it, the framed stream id and write context, and
    -- what is wrong with it on its own
    q_first integer[];
    q_seq bigint[];
    q_sord integer[];
    q_base bigint[];
    q_frame bytea[];
    q_context bytea[];
    q_problem text[];
    -- the recorded events' hash input but the previous hash, in sequence order
    n_out integer;
    o_body bytea[];
    -- the per-request loop
    v_cnt integer;
    v_start integer;
    v_next bigint;
    v_cur bigint;
    v_exp bigint;
    v_so integer;
    v_xo integer;
    v_problem text;
    v_digest bytea;
    v_version bigint[];
    v_taken uuid[];
    v_exec_ord integer[];
    v_x_digest bytea[];
    v_x_first_seq bigint[];
    n_x integer := 0;
    x canonlog.executions[];
BEGIN
    IF n_req = 0 THEN
        RETURN;
    END IF;
    IF ARRAY[cardinality(r_expected), cardinality(r_known_version), cardinality(r_count),
             cardinality(r_task), cardinality(r_execution), cardinality(r_correlation),
             cardinality(r_causation), cardinality(r_agent), cardinality(r_writer_time),
             cardinality(e_event_id), cardinality(e_payload), cardinality(e_metadata),
             cardinality(e_signing_key_id), cardinality(e_signature)]
       IS DISTINCT FROM ARRAY[n_req, n_req, n_req, n_req, n_req, n_req, n_req, n_req, n_req,
                              n_ev, n_ev, n_ev, n_ev, n_ev] THEN
        RAISE EXCEPTION USING ERRCODE = 'CL020',
            MESSAGE = 'canonlog: append_v1 arrays disagree in length';
    END IF;

    -- Serialise appends to this ledger until commit (see canonlog.lock_ledger_v1).
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION USING ERRCODE = 'CL016',
            MESSAGE = format('canonlog: appends run only under READ COMMITTED, not %s',
                             current_setting('transaction_isolation'));
    END IF;
    PERFORM pg_advisory_xact_lock(1668050791, hashtext(p_ledger));
    -- The grant, the halt flag and the head; for a single request its stream's
    -- version too. The newest entry of an index range costs a backward scan that
    -- reads every matching entry of its leaf page, so a lower bound known to be
    -- reached (the caller's last sequence, a stream's last version) saves most of
    -- the page; a wrong one only costs the unbounded scan after it.
    IF n_req = 1 THEN
        SELECT l.halted, l.halt_reason, l.writer_id, l.epoch, h.seq, h.hash, h.recorded_at,
               CASE WHEN r_known_version[1] IS NULL THEN
                        (SELECT coalesce(max(e.stream_version), 0) FROM canonlog.events e
                         WHERE e.ledger_id = p_ledger AND e.stream_id = r_stream[1])
                    ELSE coalesce(
                        (SELECT max(e.stream_version) FROM canonlog.events e
                         WHERE e.ledger_id = p_ledger AND e.stream_id = r_stream[1]
                           AND e.stream_version >= r_known_version[1]),
                        (SELECT coalesce(max(e.stream_version), 0) FROM canonlog.events e
                         WHERE e.ledger_id = p_ledger AND e.stream_id = r_stream[1])) END
        INTO v_halted, v_reason, v_holder, v_holder_epoch, v_seq, v_prev, v_prev_at, v_base
        FROM canonlog.ledgers l
        LEFT JOIN LATERAL (
            SELECT e.seq, e.hash, e.recorded_at FROM canonlog.events e
            WHERE e.ledger_id = p_ledger AND e.seq >= coalesce(p_known_seq, 0)
            ORDER BY e.seq DESC LIMIT 1) h ON true
        WHERE l.ledger_id = p_ledger;
    ELSE
        SELECT l.halted, l.halt_reason, l.writer_id, l.epoch, h.seq, h.hash, h.recorded_at
        INTO v_halted, v_reason, v_holder, v_holder_epoch, v_seq, v_prev, v_prev_at
        FROM canonlog.ledgers l
        LEFT JOIN LATERAL (
            SELECT e.seq, e.hash, e.recorded_at FROM canonlog.events e
            WHERE e.ledger_id = p_ledger AND e.seq >= coalesce(p_known_seq, 0)
            ORDER BY e.seq DESC LIMIT 1) h ON true
        WHERE l.ledger_id = p_ledger;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'CL015',
            MESSAGE = format('canonlog: ledger %s does not exist', p_ledger);
    END IF;
    IF v_halted THEN
        RAISE EXCEPTION USING ERRCODE = 'CL012',
            MESSAGE = format('canonlog: ledger %s is halted: %s', p_ledger, v_reason),
            DETAIL = v_reason;
    END IF;
    IF v_holder IS DISTINCT FROM p_writer OR v_holder_epoch IS DISTINCT FROM p_epoch THEN
        RAISE EXCEPTION USING ERRCODE = 'CL011',
            MESSAGE = format('canonlog: writer %s at epoch %s does not hold the grant of ledger %s '
                             '(held by %s at epoch %s)', p_writer, p_epoch, p_ledger,
                             coalesce(v_holder, 'nobody'), v_holder_epoch);
    END IF;
    IF v_seq IS NULL AND p_known_seq IS NOT NULL THEN
        SELECT e.seq, e.hash, e.recorded_at INTO v_seq, v_prev, v_prev_at
        FROM canonlog.events e WHERE e.ledger_id = p_ledger ORDER BY e.seq DESC LIMIT 1;
    END IF;
    IF v_seq IS NULL THEN
        v_seq := 0;
        v_prev := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
        v_prev_at := '-infinity';
    END IF;
    -- Authority time never runs backwards along the chain.
    v_now_at := greatest(clock_timestamp(), v_prev_at);
    -- Parts of the hash input the whole batch shares, framed once.
    v_prefix := canonlog.frame_text_v1('canonlog/event/v1') || canonlog.frame_text_v1(p_ledger);
    v_writer := canonlog.frame_text_v1(p_writer) || int8send(p_epoch);
    v_now := canonlog.frame_time_v1(v_now_at);

    -- Payloads and metadata must be JSON objects. Callers validate first; this
    -- is the database refusing what a faulty client might send anyway. Supplied
    -- event ids and signatures need checks of each event; most batches have none.
    IF n_ev = 1 THEN
        v_bad := CASE WHEN canonlog.is_json_object_v1(e_payload[1])
                           AND (e_metadata[1] = '\x7b7d'::bytea
                                OR canonlog.is_json_object_v1(e_metadata[1])) THEN NULL ELSE 1 END;
        v_types_ok := coalesce(char_length(e_type[1]) BETWEEN 1 AND 256, false);
        v_special := e_event_id[1] IS NOT NULL OR e_signing_key_id[1] IS NOT NULL
                     OR e_signature[1] IS NOT NULL;
    ELSE
        SELECT min(e.k) FILTER (WHERE NOT (canonlog.is_json_object_v1(e.p)
                                           AND (e.m = '\x7b7d'::bytea
                                                OR canonlog.is_json_object_v1(e.m)))),
               coalesce(bool_and(coalesce(char_length(e.t) BETWEEN 1 AND 256, false)), true),
               coalesce(bool_or(e.id IS NOT NULL OR e.kid IS NOT NULL OR e.sig IS NOT NULL), false)
        INTO v_bad, v_types_ok, v_special
        FROM unnest(e_payload, e_metadata, e_type, e_event_id, e_signing_key_id, e_signature)
             WITH ORDINALITY AS e(p, m, t, id, kid, sig, k);
    END IF;

    -- The requests: where their events are, their streams' versions, what is wrong
    -- with them on their own, the hash input they share, and what becomes of each
    -- when no outcome depends on another request's.
    IF n_req = 1 THEN
        v_total := r_count[1];
        v_counts_ok := r_count[1] >= 1;
        v_general := r_execution[1] IS NOT NULL;
        q_first := '{1}';
        q_sord := '{1}';
        q_base := ARRAY[v_base];
        q_problem := ARRAY[canonlog.request_problem_v1(r_stream[1], r_expected[1], r_task[1],
            r_execution[1], r_correlation[1], r_causation[1], r_agent[1])];
        q_frame := ARRAY[canonlog.frame_text_v1(r_stream[1])];
        q_context := ARRAY[canonlog.frame_ids_v1(r_task[1], r_execution[1], r_correlation[1],
                                                  r_causation[1], r_agent[1])
            || v_writer
            || CASE WHEN r_writer_time[1] IS NULL THEN '\x00'::bytea
                    ELSE '\x01'::bytea || canonlog.frame_time_v1(r_writer_time[1]) END
            || v_now];
        v_exp := r_expected[1];
        IF q_problem[1] IS NOT NULL THEN
            versions := '{NULL}';
            outcomes := '{invalid}';
            details := q_problem;
            numbers := '{NULL}';
            v_refused := true;
        ELSIF v_exp IS NOT NULL AND ((v_exp = -1 AND v_base = 0) OR (v_exp >= 0 AND v_base <> v_exp)) THEN
            versions := '{NULL}';
            outcomes := '{conflict}';
            details := ARRAY[format('stream %s is at version %s', r_stream[1], v_base)];
            numbers := ARRAY[v_base];
            v_refused := true;
        ELSE
            versions := ARRAY[v_base + 1];
            q_seq := ARRAY[v_seq + 1];
            v_refused := false;
        END IF;
    ELSE
        WITH u AS (
            SELECT u.*, (sum(u.c) OVER (ORDER BY u.i) - u.c + 1)::integer AS first,
                   count(*) OVER (PARTITION BY u.s COLLATE "C") AS same,
                   dense_rank() OVER (ORDER BY u.s COLLATE "C")::integer AS sord,
                   CASE WHEN u.kv IS NULL THEN
                            (SELECT coalesce(max(e.stream_version), 0) FROM canonlog.events e
                             WHERE e.ledger_id = p_ledger AND e.stream_id = u.s)
                        ELSE coalesce(
                            (SELECT max(e.stream_version) FROM canonlog.events e
                             WHERE e.ledger_id = p_ledger AND e.stream_id = u.s
                               AND e.stream_version >= u.kv),
                            (SELECT coalesce(max(e.stream_version), 0) FROM canonlog.events e
                             WHERE e.ledger_id = p_ledger AND e.stream_id = u.s)) END AS base,
                   canonlog.request_problem_v1(u.s, u.x, u.t, u.xid, u.co, u.ca, u.a) AS problem
            FROM unnest(r_stream, r_expected, r_known_version, r_count, r_task, r_execution,
                        r_correlation, r_causation, r_agent, r_writer_time)
                 WITH ORDINALITY AS u(s, x, kv, c, t, xid, co, ca, a, w, i)
        ), d AS (
            SELECT u.*, u.problem IS NULL AND (u.x IS NULL OR NOT (u.x = -1 AND u.base = 0
                                                                 OR u.x >= 0 AND u.base <> u.x)) AS ok
            FROM u
        ), v AS (
            SELECT d.*,
                   CASE WHEN d.ok THEN d.base + 1 + coalesce(sum(d.c) FILTER (WHERE d.ok) OVER (
                       PARTITION BY d.s COLLATE "C" ORDER BY d.i
                       ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) END AS version,
                   CASE WHEN d.ok THEN v_seq + 1 + coalesce(sum(d.c) FILTER (WHERE d.ok) OVER (
                       ORDER BY d.i ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) END AS seq
            FROM d ORDER BY d.i
        )
        SELECT array_agg(v.first), array_agg(v.seq), array_agg(v.sord), array_agg(v.base),
               array_agg(v.problem), array_agg(canonlog.frame_text_v1(v.s)),
               array_agg(canonlog.frame_ids_v1(v.t, v.xid, v.co, v.ca, v.a) || v_writer
                         || CASE WHEN v.w IS NULL THEN '\x00'::bytea
                                 ELSE '\x01'::bytea || canonlog.frame_time_v1(v.w) END
                         || v_now),
               array_agg(v.version),
               array_agg(CASE WHEN v.problem IS NOT NULL THEN 'invalid'
                              WHEN NOT v.ok THEN 'conflict' END),
               array_agg(CASE WHEN v.problem IS NOT NULL THEN v.problem
                              WHEN NOT v.ok THEN format('stream %s is at version %s', v.s, v.base)
                         END),
               array_agg(CASE WHEN v.problem IS NULL AND NOT v.ok THEN v.base END),
               sum(v.c), bool_and(coalesce(v.c >= 1, false)), bool_or(NOT v.ok),
               bool_or(v.xid IS NOT NULL OR v.x IS NOT NULL AND v.same > 1)
        INTO q_first, q_seq, q_sord, q_base, q_problem, q_frame, q_context, versions, outcomes,
             details, numbers, v_total, v_counts_ok, v_refused, v_general
        FROM v;
    END IF;
    IF NOT v_counts_ok OR v_total IS DISTINCT FROM n_ev THEN
        RAISE EXCEPTION USING ERRCODE = 'CL020',
            MESSAGE = 'canonlog: append_v1 request event counts do not match the events';
    END IF;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'CL020',
            MESSAGE = format('canonlog: event %s of the batch: payload and metadata must be JSON objects',
                             v_bad);
    END IF;

    IF v_general OR v_special OR NOT v_types_ok THEN
        -- Outcomes that depend on earlier requests of the batch, and checks of
        -- each event: one request at a time.
        versions := array_fill(NULL::bigint, ARRAY[n_req]);
        q_seq := versions;
        outcomes := array_fill(NULL::text, ARRAY[n_req]);
        details := outcomes;
        numbers := versions;
        v_refused := false;
        IF EXISTS (SELECT FROM unnest(r_execution) AS u(x) WHERE u.x IS NOT NULL) THEN
            SELECT array_agg(t.ord ORDER BY t.i) INTO v_exec_ord
            FROM (SELECT u.i, CASE WHEN u.x IS NOT NULL THEN
                                  dense_rank() OVER (PARTITION BY u.x IS NULL ORDER BY u.x COLLATE "C")
                              END AS ord
                  FROM unnest(r_execution) WITH ORDINALITY AS u(x, i)) t;
            SELECT array_agg(x.request_digest ORDER BY d.x COLLATE "C"),
                   array_agg(x.first_seq ORDER BY d.x COLLATE "C")
            INTO v_x_digest, v_x_first_seq
            FROM (SELECT DISTINCT u.x FROM unnest(r_execution) AS u(x) WHERE u.x IS NOT NULL) d
            LEFT JOIN canonlog.executions x ON x.ledger_id = p_ledger AND x.execution_id = d.x;
        END IF;
        v_next := v_seq + 1;
        FOR i IN 1..n_req LOOP
            v_cnt := r_count[i];
            v_start := q_first[i] - 1;
            v_problem := q_problem[i];
            IF v_problem IS NULL THEN
                FOR j IN v_start + 1 .. v_start + v_cnt LOOP
                    IF e_type[j] IS NULL OR char_length(e_type[j]) NOT BETWEEN 1 AND 256 THEN
                        v_problem := 'event_type must be 1 to 256 characters';
                    ELSIF NOT v_special THEN
                        CONTINUE;
                    ELSIF e_event_id[j] IS NOT NULL AND (
                            e_event_id[j] = ANY (v_taken)
                            OR e_event_id[j] = ANY (e_event_id[v_start + 1 : j - 1])
                            OR EXISTS (SELECT FROM canonlog.events e WHERE e.event_id = e_event_id[j])) THEN
                        v_problem := format('event id %s is already recorded', e_event_id[j]);
                    ELSIF (e_signing_key_id[j] IS NULL) <> (e_signature[j] IS NULL) THEN
                        v_problem := 'a signature needs its signing key id, and a key id its signature';
                    ELSIF e_signature[j] IS NOT NULL AND (
                            octet_length(e_signature[j]) <> 64 OR e_event_id[j] IS NULL
                            OR r_agent[i] IS NULL) THEN
                        v_problem := 'a signed event needs a 64-byte Ed25519 signature, an event id '
                                     'and an agent id';
                    ELSIF e_signing_key_id[j] IS NOT NULL AND NOT EXISTS (
                            SELECT FROM canonlog.keys k
                            WHERE k.ledger_id = p_ledger AND k.key_id = e_signing_key_id[j]
                              AND k.purpose = 'agent' AND k.owner_id = r_agent[i]
                              AND k.revoked_seq IS NULL) THEN
                        v_problem := format('signing key %s is not an active key of agent %s',
                                            e_signing_key_id[j], r_agent[i]);
                    END IF;
                    EXIT WHEN v_problem IS NOT NULL;
                END LOOP;
            END IF;
            IF v_problem IS NOT NULL THEN
                outcomes[i] := 'invalid';
                details[i] := v_problem;
                v_refused := true;
                CONTINUE;
            END IF;

            v_xo := v_exec_ord[i];
            IF v_xo IS NOT NULL THEN
                v_digest := canonlog.frame_text_v1('canonlog/request/v1')
                    || canonlog.frame_text_v1(r_stream[i])
                    || canonlog.frame_opt_text_v1(r_task[i])
                    || canonlog.frame_opt_text_v1(r_correlation[i])
                    || canonlog.frame_opt_text_v1(r_causation[i])
                    || canonlog.frame_opt_text_v1(r_agent[i])
                    || int4send(v_cnt);
                FOR j IN v_start + 1 .. v_start + v_cnt LOOP
                    v_digest := v_digest || canonlog.frame_text_v1(e_type[j])
                        || int4send(octet_length(e_payload[j])) || e_payload[j]
                        || int4send(octet_length(e_metadata[j])) || e_metadata[j];
                END LOOP;
                v_digest := sha256(v_digest);
                IF v_x_digest[v_xo] IS NOT NULL THEN
                    IF v_x_digest[v_xo] <> v_digest THEN
                        outcomes[i] := 'idempotency_conflict';
                        details[i] := format('execution id %s was used for a different request',
                                             r_execution[i]);
                    ELSE
                        outcomes[i] := 'replayed';
                        numbers[i] := v_x_first_seq[v_xo];
                    END IF;
                    v_refused := true;
                    CONTINUE;
                END IF;
            END IF;

            v_so := q_sord[i];
            v_cur := coalesce(v_version[v_so], q_base[i]);
            v_exp := r_expected[i];
            IF v_exp IS NOT NULL AND ((v_exp = -1 AND v_cur = 0) OR (v_exp >= 0 AND v_cur <> v_exp)) THEN
                outcomes[i] := 'conflict';
                details[i] := format('stream %s is at version %s', r_stream[i], v_cur);
                numbers[i] := v_cur;
                v_refused := true;
                CONTINUE;
            END IF;
            versions[i] := v_cur + 1;
            q_seq[i] := v_next;
            v_version[v_so] := v_cur + v_cnt;
            IF v_xo IS NOT NULL THEN
                n_x := n_x + 1;
                x[n_x] := ROW(p_ledger, r_execution[i], v_digest, v_next, v_cnt);
                v_x_digest[v_xo] := v_digest;
                v_x_first_seq[v_xo] := v_next;
            END IF;
            IF v_special THEN
                v_taken := v_taken || e_event_id[v_start + 1 : v_start + v_cnt];
            END IF;
            v_next := v_next + v_cnt;
        END LOOP;
    END IF;
    IF NOT v_refused THEN
        outcomes := NULL;
        details := NULL;
        numbers := NULL;
    END IF;

    -- The recorded events' hash input but the previous hash, in sequence order:
    -- for a single event in one expression, else in one query.
    IF n_ev = 1 THEN
        IF versions[1] IS NULL THEN
            RETURN;
        END IF;
        n_out := 1;
        event_ids := ARRAY[coalesce(e_event_id[1], gen_random_uuid())];
        o_body := ARRAY[canonlog.frame_event_v1(v_prefix, v_seq + 1, event_ids[1], q_frame[1],
            versions[1], e_type[1], e_payload[1], e_metadata[1], q_context[1],
            e_signing_key_id[1], e_signature[1])];
    ELSE
        SELECT array_agg(f.id),
               array_agg(canonlog.frame_event_v1(v_prefix, f.seq, f.id, q_frame[f.i], f.v,
                   e_type[f.k], e_payload[f.k], e_metadata[f.k], q_context[f.i],
                   e_signing_key_id[f.k], e_signature[f.k])),
               count(*)
        INTO event_ids, o_body, n_out
        FROM (SELECT r.i, q_first[r.i] + g.g AS k, q_seq[r.i] + g.g AS seq, r.v + g.g AS v,
                     coalesce(e_event_id[q_first[r.i] + g.g], gen_random_uuid()) AS id
              FROM unnest(versions, r_count) WITH ORDINALITY AS r(v, c, i)
              CROSS JOIN LATERAL generate_series(0, r.c - 1) AS g(g)
              WHERE r.v IS NOT NULL
              ORDER BY r.i, g.g OFFSET 0) f;
        IF n_out = 0 THEN
            RETURN;
        END IF;
    END IF;

    first_seq := v_seq + 1;
    recorded_at := v_now_at;
    prev_hash := v_prev;
    FOR j IN 1 .. n_out LOOP
        v_prev := sha256(o_body[j] || v_prev);
        hashes[j] := v_prev;
    END LOOP;

    PERFORM set_config('canonlog.append_guard', 'on', true);
    IF n_ev = 1 THEN
        INSERT INTO canonlog.events (
            ledger_id, seq, event_id, stream_id, stream_version, event_type, payload, metadata,
            task_id, execution_id, correlation_id, causation_id, agent_id, writer_id, epoch,
            writer_time, recorded_at, hash_version, prev_hash, hash, signing_key_id, signature)
        VALUES (
            p_ledger, first_seq, event_ids[1], r_stream[1], versions[1], e_type[1], e_payload[1],
            e_metadata[1], r_task[1], r_execution[1], r_correlation[1], r_causation[1],
            r_agent[1], p_writer, p_epoch, r_writer_time[1], v_now_at, 1, prev_hash, hashes[1],
            e_signing_key_id[1], e_signature[1]);
    ELSE
        INSERT INTO canonlog.events (
            ledger_id, seq, event_id, stream_id, stream_version, event_type, payload, metadata,
            task_id, execution_id, correlation_id, causation_id, agent_id, writer_id, epoch,
            writer_time, recorded_at, hash_version, prev_hash, hash, signing_key_id, signature)
        SELECT p_ledger, f.seq, event_ids[f.n], r_stream[f.i], f.v, e_type[f.k], e_payload[f.k],
               e_metadata[f.k], r_task[f.i], r_execution[f.i], r_correlation[f.i],
               r_causation[f.i], r_agent[f.i], p_writer, p_epoch, r_writer_time[f.i], v_now_at, 1,
               CASE WHEN f.n = 1 THEN prev_hash ELSE hashes[f.n - 1] END, hashes[f.n],
               e_signing_key_id[f.k], e_signature[f.k]
        FROM (SELECT r.i, q_first[r.i] + g.g AS k, q_seq[r.i] + g.g AS seq, r.v + g.g AS v,
                     (q_seq[r.i] + g.g - v_seq)::integer AS n
              FROM unnest(versions, r_count) WITH ORDINALITY AS r(v, c, i)
              CROSS JOIN LATERAL generate_series(0, r.c - 1) AS g(g)
              WHERE r.v IS NOT NULL) f;
    END IF;
    IF n_x > 0 THEN
        INSERT INTO canonlog.executions SELECT * FROM unnest(x);
    END IF;
    PERFORM set_config('canonlog.append_guard', 'off', true);
    -- A wake-up hint for subscribers, delivered at commit.
    PERFORM pg_notify('canonlog_events', p_ledger || ':' || (v_seq + n_out));
END
$body$;

REVOKE ALL ON canonlog.events, canonlog.ledgers, canonlog.executions, canonlog.keys,
    canonlog.events_json FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA canonlog FROM PUBLIC;
GRANT SELECT ON canonlog.events, canonlog.ledgers, canonlog.events_json
    TO canonlog_reader, canonlog_writer, canonlog_operator;
GRANT EXECUTE ON FUNCTION canonlog.append_v1(text, text, bigint, bigint, text[], bigint[],
    bigint[], integer[], text[], text[], text[], text[], text[], timestamptz[], uuid[], text[],
    bytea[], bytea[], text[], bytea[])
    TO canonlog_writer;
GRANT EXECUTE ON FUNCTION canonlog.add_key_v1(text, text, text, text, bytea, text),
    canonlog.revoke_key_v1(text, text, text, text) TO canonlog_operator;
GRANT SELECT ON canonlog.keys TO canonlog_reader, canonlog_writer, canonlog_operator;
GRANT EXECUTE ON FUNCTION canonlog.acquire_grant_v1(text, text) TO canonlog_writer;
GRANT EXECUTE ON FUNCTION canonlog.release_grant_v1(text, text, bigint) TO canonlog_writer;
GRANT EXECUTE ON FUNCTION canonlog.halt_v1(text, text, text) TO canonlog_writer, canonlog_operator;
-- No role but the owner executes canonlog.resume_v1: a halted ledger resumes only
-- through canonlog.resume_ceremony_v1 (sql/0003_ceremonies.sql), which runs as the
-- owner (SECURITY DEFINER) and calls it once the witnesses and the waiting period
-- allow. The REVOKE above already took EXECUTE from PUBLIC; granting it to nobody
-- keeps it so.
GRANT EXECUTE ON FUNCTION canonlog.event_hash_v1(text, bigint, uuid, text, bigint, text, bytea,
    bytea, text, text, text, text, text, text, bigint, timestamptz, timestamptz, text, bytea, bytea)
    TO canonlog_reader, canonlog_writer, canonlog_operator;
GRANT EXECUTE ON FUNCTION canonlog.frame_text_v1(text), canonlog.frame_opt_text_v1(text),
    canonlog.frame_time_v1(timestamptz)
    TO canonlog_reader, canonlog_writer, canonlog_operator;
