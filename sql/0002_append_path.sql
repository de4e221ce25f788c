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
-- Result rows: per recorded or replayed event (status 'ok' or 'replayed'), or one
-- row per refused request (status 'conflict' with actual_version,
-- 'idempotency_conflict', or 'invalid' with the reason in detail).
--
-- The function is written for throughput: the ledger lock is held through the
-- commit's WAL flush, so whatever runs here runs while every other appender of
-- the ledger waits. Work is set-based where it can be (validation of payloads,
-- loading stream versions, the INSERT), the per-event loop does only the hash,
-- and every part of the hash input that is the same for a whole request or
-- batch is framed once.

SET LOCAL ROLE canonlog_owner;

CREATE TYPE canonlog.append_result_v1 AS (
    req integer, status text, detail text, actual_version bigint, seq bigint, event_id uuid,
    stream_version bigint, writer_id text, epoch bigint, writer_time timestamptz,
    recorded_at timestamptz, prev_hash bytea, hash bytea, signing_key_id text, signature bytea);

CREATE FUNCTION canonlog.append_v1(
    p_ledger text, p_writer text, p_epoch bigint,
    r_stream text[], r_expected bigint[], r_count integer[],
    r_task text[], r_execution text[], r_correlation text[], r_causation text[],
    r_agent text[], r_writer_time timestamptz[],
    e_event_id uuid[], e_type text[], e_payload bytea[], e_metadata bytea[],
    e_signing_key_id text[], e_signature bytea[])
RETURNS SETOF canonlog.append_result_v1
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $body$
#variable_conflict use_column
DECLARE
    n_req integer := coalesce(cardinality(r_stream), 0);
    n_ev integer := coalesce(cardinality(e_type), 0);
    v_ledger canonlog.ledgers;
    v_seq bigint;
    v_prev bytea;
    v_prev_at timestamptz;
    v_now bytea;
    v_now_at timestamptz;
    v_prefix bytea;
    v_suffix bytea;
    v_stream bytea;
    v_context bytea;
    v_digest bytea;
    v_hash bytea;
    v_id uuid;
    v_cur bigint;
    v_exp bigint;
    v_cnt integer;
    v_start integer;
    v_total integer := 0;
    v_so integer;
    v_xo integer;
    v_problem text;
    v_res canonlog.append_result_v1;
    -- per request: ordinal of its stream and of its execution id within the batch
    v_stream_ord integer[];
    v_exec_ord integer[];
    -- per stream ordinal: current version; per execution ordinal: known record
    v_version bigint[];
    v_x_digest bytea[];
    v_x_first_seq bigint[];
    v_x_count integer[];
    v_x_res_start integer[];
    v_special boolean;
    -- accepted events, in sequence order
    n_out integer := 0;
    o_k integer[];
    o_req integer[];
    o_seq bigint[];
    o_id uuid[];
    o_version bigint[];
    o_prev bytea[];
    o_hash bytea[];
    -- idempotency records to insert
    n_x integer := 0;
    x canonlog.executions[];
    -- result rows of refused and replayed requests
    n_res integer := 0;
    s canonlog.append_result_v1[];
BEGIN
    IF n_req = 0 THEN
        RETURN;
    END IF;
    IF coalesce(cardinality(r_expected), 0) <> n_req OR coalesce(cardinality(r_count), 0) <> n_req
       OR coalesce(cardinality(r_task), 0) <> n_req OR coalesce(cardinality(r_execution), 0) <> n_req
       OR coalesce(cardinality(r_correlation), 0) <> n_req
       OR coalesce(cardinality(r_causation), 0) <> n_req
       OR coalesce(cardinality(r_agent), 0) <> n_req
       OR coalesce(cardinality(r_writer_time), 0) <> n_req
       OR coalesce(cardinality(e_event_id), 0) <> n_ev OR coalesce(cardinality(e_payload), 0) <> n_ev
       OR coalesce(cardinality(e_metadata), 0) <> n_ev
       OR coalesce(cardinality(e_signing_key_id), 0) <> n_ev
       OR coalesce(cardinality(e_signature), 0) <> n_ev THEN
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
    SELECT * INTO v_ledger FROM canonlog.ledgers l WHERE l.ledger_id = p_ledger;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'CL015',
            MESSAGE = format('canonlog: ledger %s does not exist', p_ledger);
    END IF;
    IF v_ledger.halted THEN
        RAISE EXCEPTION USING ERRCODE = 'CL012',
            MESSAGE = format('canonlog: ledger %s is halted: %s', p_ledger, v_ledger.halt_reason),
            DETAIL = v_ledger.halt_reason;
    END IF;
    IF v_ledger.writer_id IS DISTINCT FROM p_writer OR v_ledger.epoch IS DISTINCT FROM p_epoch THEN
        RAISE EXCEPTION USING ERRCODE = 'CL011',
            MESSAGE = format('canonlog: writer %s at epoch %s does not hold the grant of ledger %s '
                             '(held by %s at epoch %s)', p_writer, p_epoch, p_ledger,
                             coalesce(v_ledger.writer_id, 'nobody'), v_ledger.epoch);
    END IF;

    -- Payloads and metadata must be JSON objects. Callers validate first; this
    -- is the database refusing what a faulty client might send anyway.
    SELECT min(u.k) INTO v_start
    FROM unnest(e_payload, e_metadata) WITH ORDINALITY AS u(p, m, k)
    WHERE u.p IS NULL OR u.m IS NULL
       OR jsonb_typeof(convert_from(u.p, 'UTF8')::jsonb) <> 'object'
       OR jsonb_typeof(convert_from(u.m, 'UTF8')::jsonb) <> 'object';
    IF v_start IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'CL020',
            MESSAGE = format('canonlog: event %s of the batch: payload and metadata must be JSON objects',
                             v_start);
    END IF;

    SELECT e.seq, e.hash, e.recorded_at INTO v_seq, v_prev, v_prev_at
    FROM canonlog.events e WHERE e.ledger_id = p_ledger ORDER BY e.seq DESC LIMIT 1;
    IF NOT FOUND THEN
        v_seq := 0;
        v_prev := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
        v_prev_at := '-infinity';
    END IF;
    -- Authority time never runs backwards along the chain.
    v_now_at := greatest(clock_timestamp(), v_prev_at);
    v_now := canonlog.frame_time_v1(v_now_at);
    v_prefix := canonlog.frame_text_v1('canonlog/event/v1') || canonlog.frame_text_v1(p_ledger);
    v_suffix := canonlog.frame_text_v1(p_writer) || int8send(p_epoch);

    -- Each stream's current version, with one query. Several requests may target
    -- one stream, so they share an ordinal and the loop tracks the version.
    IF n_req = 1 THEN
        v_stream_ord := '{1}';
        SELECT ARRAY[coalesce(max(e.stream_version), 0)] INTO v_version
        FROM canonlog.events e WHERE e.ledger_id = p_ledger AND e.stream_id = r_stream[1];
    ELSE
        SELECT array_agg(t.ord ORDER BY t.i) INTO v_stream_ord
        FROM (SELECT u.i, dense_rank() OVER (ORDER BY u.s COLLATE "C") AS ord
              FROM unnest(r_stream) WITH ORDINALITY AS u(s, i)) t;
        SELECT array_agg(coalesce(l.v, 0) ORDER BY d.s COLLATE "C") INTO v_version
        FROM (SELECT DISTINCT u.s FROM unnest(r_stream) AS u(s)) d
        LEFT JOIN LATERAL (
            SELECT e.stream_version AS v FROM canonlog.events e
            WHERE e.ledger_id = p_ledger AND e.stream_id = d.s
            ORDER BY e.stream_version DESC LIMIT 1) l ON true;
    END IF;

    -- Execution ids (idempotency): numbered likewise, with their records.
    IF cardinality(array_remove(r_execution, NULL)) > 0 THEN
        SELECT array_agg(t.ord ORDER BY t.i) INTO v_exec_ord
        FROM (SELECT u.i, CASE WHEN u.x IS NULL THEN NULL
                               ELSE dense_rank() OVER (PARTITION BY u.x IS NULL ORDER BY u.x COLLATE "C")
                          END AS ord
              FROM unnest(r_execution) WITH ORDINALITY AS u(x, i)) t;
        SELECT array_agg(x.request_digest ORDER BY d.x COLLATE "C"),
               array_agg(x.first_seq ORDER BY d.x COLLATE "C"),
               array_agg(x.event_count ORDER BY d.x COLLATE "C")
        INTO v_x_digest, v_x_first_seq, v_x_count
        FROM (SELECT DISTINCT u.x FROM unnest(r_execution) AS u(x) WHERE u.x IS NOT NULL) d
        LEFT JOIN canonlog.executions x ON x.ledger_id = p_ledger AND x.execution_id = d.x;
    END IF;
    -- Supplied event ids and signatures need per-event checks; most batches have neither.
    v_special := cardinality(array_remove(e_event_id, NULL)) > 0
                 OR cardinality(array_remove(e_signing_key_id, NULL)) > 0
                 OR cardinality(array_remove(e_signature, NULL)) > 0;

    FOR i IN 1..n_req LOOP
        v_cnt := r_count[i];
        IF v_cnt IS NULL OR v_cnt < 1 OR v_total + v_cnt > n_ev THEN
            RAISE EXCEPTION USING ERRCODE = 'CL020',
                MESSAGE = 'canonlog: append_v1 request event counts do not match the events';
        END IF;
        v_start := v_total;
        v_total := v_total + v_cnt;
        v_exp := r_expected[i];
        v_problem := NULL;

        IF r_stream[i] IS NULL OR char_length(r_stream[i]) NOT BETWEEN 1 AND 256 THEN
            v_problem := 'stream_id must be 1 to 256 characters';
        ELSIF left(r_stream[i], 1) = '$' THEN
            v_problem := format('stream_id %s is reserved for the ledger''s own events', r_stream[i]);
        ELSIF v_exp < -1 THEN
            v_problem := format('expected version %s is not a version', v_exp);
        ELSIF char_length(r_task[i]) NOT BETWEEN 1 AND 256
              OR char_length(r_execution[i]) NOT BETWEEN 1 AND 256
              OR char_length(r_correlation[i]) NOT BETWEEN 1 AND 256
              OR char_length(r_causation[i]) NOT BETWEEN 1 AND 256
              OR char_length(r_agent[i]) NOT BETWEEN 1 AND 256 THEN
            v_problem := 'task, execution, correlation, causation and agent ids must be 1 to 256 characters';
        ELSE
            FOR j IN v_start + 1 .. v_total LOOP
                IF e_type[j] IS NULL OR char_length(e_type[j]) NOT BETWEEN 1 AND 256 THEN
                    v_problem := 'event_type must be 1 to 256 characters';
                ELSIF NOT v_special THEN
                    CONTINUE;
                ELSIF e_event_id[j] IS NOT NULL AND (
                        e_event_id[j] = ANY (o_id)
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
            n_res := n_res + 1;
            s[n_res] := ROW(i, 'invalid', v_problem, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                            NULL, NULL, NULL, NULL, NULL);
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
            FOR j IN v_start + 1 .. v_total LOOP
                v_digest := v_digest || canonlog.frame_text_v1(e_type[j])
                    || int4send(octet_length(e_payload[j])) || e_payload[j]
                    || int4send(octet_length(e_metadata[j])) || e_metadata[j];
            END LOOP;
            v_digest := sha256(v_digest);
            IF v_x_digest[v_xo] IS NOT NULL THEN
                IF v_x_digest[v_xo] <> v_digest THEN
                    n_res := n_res + 1;
                    s[n_res] := ROW(i, 'idempotency_conflict',
                                    format('execution id %s was used for a different request', r_execution[i]),
                                    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                                    NULL, NULL);
                ELSIF v_x_res_start[v_xo] IS NOT NULL THEN
                    -- Recorded earlier in this batch: repeat those events.
                    FOR j IN v_x_res_start[v_xo] .. v_x_res_start[v_xo] + v_x_count[v_xo] - 1 LOOP
                        n_res := n_res + 1;
                        s[n_res] := ROW(i, 'replayed', NULL, NULL, o_seq[j], o_id[j], o_version[j],
                                        p_writer, p_epoch, r_writer_time[o_req[j]], v_now_at,
                                        o_prev[j], o_hash[j], e_signing_key_id[o_k[j]],
                                        e_signature[o_k[j]]);
                    END LOOP;
                ELSE
                    FOR v_res IN
                        SELECT i, 'replayed', NULL, NULL, e.seq, e.event_id, e.stream_version,
                               e.writer_id, e.epoch, e.writer_time, e.recorded_at, e.prev_hash, e.hash,
                               e.signing_key_id, e.signature
                        FROM canonlog.events e
                        WHERE e.ledger_id = p_ledger
                          AND e.seq BETWEEN v_x_first_seq[v_xo] AND v_x_first_seq[v_xo] + v_x_count[v_xo] - 1
                        ORDER BY e.seq
                    LOOP
                        n_res := n_res + 1;
                        s[n_res] := v_res;
                    END LOOP;
                END IF;
                CONTINUE;
            END IF;
        END IF;

        v_so := v_stream_ord[i];
        v_cur := v_version[v_so];
        IF v_exp IS NOT NULL AND ((v_exp = -1 AND v_cur = 0) OR (v_exp >= 0 AND v_cur <> v_exp)) THEN
            n_res := n_res + 1;
            s[n_res] := ROW(i, 'conflict', format('stream %s is at version %s', r_stream[i], v_cur),
                            v_cur, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
            CONTINUE;
        END IF;

        IF v_xo IS NOT NULL THEN
            n_x := n_x + 1;
            x[n_x] := ROW(p_ledger, r_execution[i], v_digest, v_seq + 1, v_cnt);
            v_x_digest[v_xo] := v_digest;
            v_x_count[v_xo] := v_cnt;
            v_x_res_start[v_xo] := n_out + 1;
        END IF;

        -- The parts of the hash input shared by the request's events (hash-spec.md).
        v_stream := canonlog.frame_text_v1(r_stream[i]);
        v_context := canonlog.frame_opt_text_v1(r_task[i])
            || canonlog.frame_opt_text_v1(r_execution[i])
            || canonlog.frame_opt_text_v1(r_correlation[i])
            || canonlog.frame_opt_text_v1(r_causation[i])
            || canonlog.frame_opt_text_v1(r_agent[i])
            || v_suffix
            || CASE WHEN r_writer_time[i] IS NULL THEN '\x00'::bytea
                    ELSE '\x01'::bytea || canonlog.frame_time_v1(r_writer_time[i]) END
            || v_now;
        FOR j IN v_start + 1 .. v_total LOOP
            v_seq := v_seq + 1;
            v_cur := v_cur + 1;
            v_id := coalesce(e_event_id[j], gen_random_uuid());
            v_hash := sha256(v_prefix || int8send(v_seq) || uuid_send(v_id) || v_stream
                || int8send(v_cur) || canonlog.frame_text_v1(e_type[j])
                || int4send(octet_length(e_payload[j])) || e_payload[j]
                || int4send(octet_length(e_metadata[j])) || e_metadata[j]
                || v_context
                || CASE WHEN e_signature[j] IS NULL THEN '\x0000'::bytea
                        ELSE canonlog.frame_opt_text_v1(e_signing_key_id[j]) || '\x01'::bytea
                             || int4send(octet_length(e_signature[j])) || e_signature[j] END
                || v_prev);
            n_out := n_out + 1;
            o_k[n_out] := j;
            o_req[n_out] := i;
            o_seq[n_out] := v_seq;
            o_id[n_out] := v_id;
            o_version[n_out] := v_cur;
            o_prev[n_out] := v_prev;
            o_hash[n_out] := v_hash;
            v_prev := v_hash;
        END LOOP;
        v_version[v_so] := v_cur;
    END LOOP;
    IF v_total <> n_ev THEN
        RAISE EXCEPTION USING ERRCODE = 'CL020',
            MESSAGE = 'canonlog: append_v1 request event counts do not match the events';
    END IF;

    IF n_out > 0 THEN
        PERFORM set_config('canonlog.append_guard', 'on', true);
        INSERT INTO canonlog.events (
            ledger_id, seq, event_id, stream_id, stream_version, event_type, payload, metadata,
            task_id, execution_id, correlation_id, causation_id, agent_id, writer_id, epoch,
            writer_time, recorded_at, hash_version, prev_hash, hash, signing_key_id, signature)
        SELECT p_ledger, u.seq, u.id, r_stream[u.req], u.version, e_type[u.k], e_payload[u.k],
               e_metadata[u.k], r_task[u.req], r_execution[u.req], r_correlation[u.req],
               r_causation[u.req], r_agent[u.req], p_writer, p_epoch, r_writer_time[u.req],
               v_now_at, 1, u.prev, u.hash, e_signing_key_id[u.k], e_signature[u.k]
        FROM unnest(o_k, o_req, o_seq, o_id, o_version, o_prev, o_hash)
             AS u(k, req, seq, id, version, prev, hash);
        IF n_x > 0 THEN
            INSERT INTO canonlog.executions SELECT * FROM unnest(x);
        END IF;
        PERFORM set_config('canonlog.append_guard', 'off', true);
        -- A wake-up hint for subscribers, delivered at commit.
        PERFORM pg_notify('canonlog_events', p_ledger || ':' || v_seq);
        RETURN QUERY
        SELECT u.req, 'ok'::text, NULL::text, NULL::bigint, u.seq, u.id, u.version, p_writer,
               p_epoch, r_writer_time[u.req], v_now_at, u.prev, u.hash, e_signing_key_id[u.k],
               e_signature[u.k]
        FROM unnest(o_k, o_req, o_seq, o_id, o_version, o_prev, o_hash)
             AS u(k, req, seq, id, version, prev, hash);
    END IF;
    IF n_res > 0 THEN
        RETURN QUERY SELECT * FROM unnest(s);
    END IF;
END
$body$;

REVOKE ALL ON canonlog.events, canonlog.ledgers, canonlog.executions, canonlog.keys,
    canonlog.events_json FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA canonlog FROM PUBLIC;
GRANT SELECT ON canonlog.events, canonlog.ledgers, canonlog.events_json
    TO canonlog_reader, canonlog_writer, canonlog_operator;
GRANT EXECUTE ON FUNCTION canonlog.append_v1(text, text, bigint, text[], bigint[], integer[],
    text[], text[], text[], text[], text[], timestamptz[], uuid[], text[], bytea[], bytea[],
    text[], bytea[])
    TO canonlog_writer;
GRANT EXECUTE ON FUNCTION canonlog.add_key_v1(text, text, text, text, bytea, text),
    canonlog.revoke_key_v1(text, text, text, text) TO canonlog_operator;
GRANT SELECT ON canonlog.keys TO canonlog_reader, canonlog_writer, canonlog_operator;
GRANT EXECUTE ON FUNCTION canonlog.acquire_grant_v1(text, text) TO canonlog_writer;
GRANT EXECUTE ON FUNCTION canonlog.release_grant_v1(text, text, bigint) TO canonlog_writer;
GRANT EXECUTE ON FUNCTION canonlog.halt_v1(text, text, text) TO canonlog_writer, canonlog_operator;
GRANT EXECUTE ON FUNCTION canonlog.resume_v1(text, text, jsonb) TO canonlog_operator;
GRANT EXECUTE ON FUNCTION canonlog.event_hash_v1(text, bigint, uuid, text, bigint, text, bytea,
    bytea, text, text, text, text, text, text, bigint, timestamptz, timestamptz, text, bytea, bytea)
    TO canonlog_reader, canonlog_writer, canonlog_operator;
GRANT EXECUTE ON FUNCTION canonlog.frame_text_v1(text), canonlog.frame_opt_text_v1(text),
    canonlog.frame_time_v1(timestamptz)
    TO canonlog_reader, canonlog_writer, canonlog_operator;
