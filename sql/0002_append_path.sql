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
    n_req integer := coalesce(array_length(r_stream, 1), 0);
    n_ev integer := coalesce(array_length(e_type, 1), 0);
    v_ledger canonlog.ledgers;
    v_seq bigint;
    v_prev bytea;
    v_prev_at timestamptz;
    v_now timestamptz;
    -- per request: ordinal of its stream and of its execution id within the batch
    v_stream_ord integer[];
    v_exec_ord integer[];
    -- per stream ordinal: current version; per execution ordinal: known record
    v_version bigint[];
    v_x_digest bytea[];
    v_x_first_seq bigint[];
    v_x_count integer[];
    v_x_res_start integer[];
    v_digest bytea;
    v_cur bigint;
    v_exp bigint;
    v_cnt integer;
    v_so integer;
    v_xo integer;
    v_k integer := 0;
    v_id uuid;
    v_hash bytea;
    v_problem text;
    v_start integer;
    v_res canonlog.append_result_v1;
    v_ids uuid[] := '{}';
    -- rows to insert, idempotency records, result rows
    n_out integer := 0;
    o canonlog.events[];
    n_x integer := 0;
    x canonlog.executions[];
    n_res integer := 0;
    s canonlog.append_result_v1[];
BEGIN
    IF n_req = 0 THEN
        RETURN;
    END IF;
    IF coalesce(array_length(r_expected, 1), 0) <> n_req
       OR coalesce(array_length(r_count, 1), 0) <> n_req
       OR coalesce(array_length(r_task, 1), 0) <> n_req
       OR coalesce(array_length(r_execution, 1), 0) <> n_req
       OR coalesce(array_length(r_correlation, 1), 0) <> n_req
       OR coalesce(array_length(r_causation, 1), 0) <> n_req
       OR coalesce(array_length(r_agent, 1), 0) <> n_req
       OR coalesce(array_length(r_writer_time, 1), 0) <> n_req
       OR coalesce(array_length(e_event_id, 1), 0) <> n_ev
       OR coalesce(array_length(e_payload, 1), 0) <> n_ev
       OR coalesce(array_length(e_metadata, 1), 0) <> n_ev
       OR coalesce(array_length(e_signing_key_id, 1), 0) <> n_ev
       OR coalesce(array_length(e_signature, 1), 0) <> n_ev
       OR (SELECT coalesce(sum(c), -1) FROM unnest(r_count) c) <> n_ev
       OR EXISTS (SELECT FROM unnest(r_count) c WHERE c IS NULL OR c < 1) THEN
        RAISE EXCEPTION USING ERRCODE = 'CL020',
            MESSAGE = 'canonlog: append_v1 arrays disagree in length, or a request has no events';
    END IF;

    PERFORM canonlog.lock_ledger_v1(p_ledger);
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
    FOR v_k IN 1..n_ev LOOP
        IF e_payload[v_k] IS NULL OR e_metadata[v_k] IS NULL
           OR jsonb_typeof(convert_from(e_payload[v_k], 'UTF8')::jsonb) <> 'object'
           OR jsonb_typeof(convert_from(e_metadata[v_k], 'UTF8')::jsonb) <> 'object' THEN
            RAISE EXCEPTION USING ERRCODE = 'CL020',
                MESSAGE = format('canonlog: event %s of the batch: payload and metadata must be JSON objects', v_k);
        END IF;
    END LOOP;
    v_k := 0;

    SELECT e.seq, e.hash, e.recorded_at INTO v_seq, v_prev, v_prev_at
    FROM canonlog.events e WHERE e.ledger_id = p_ledger ORDER BY e.seq DESC LIMIT 1;
    IF NOT FOUND THEN
        v_seq := 0;
        v_prev := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
        v_prev_at := '-infinity';
    END IF;
    -- Authority time never runs backwards along the chain.
    v_now := greatest(clock_timestamp(), v_prev_at);

    -- Number the distinct streams and execution ids of the batch, and load each
    -- one's state with one query, so the loop below does array lookups only.
    SELECT array_agg(t.ord ORDER BY t.i) INTO v_stream_ord
    FROM (SELECT u.i, dense_rank() OVER (ORDER BY u.s COLLATE "C") AS ord
          FROM unnest(r_stream) WITH ORDINALITY AS u(s, i)) t;
    SELECT array_agg(coalesce(l.v, 0) ORDER BY d.s COLLATE "C") INTO v_version
    FROM (SELECT DISTINCT u.s FROM unnest(r_stream) AS u(s)) d
    LEFT JOIN LATERAL (
        SELECT e.stream_version AS v FROM canonlog.events e
        WHERE e.ledger_id = p_ledger AND e.stream_id = d.s
        ORDER BY e.stream_version DESC LIMIT 1) l ON true;

    IF EXISTS (SELECT FROM unnest(r_execution) x WHERE x IS NOT NULL) THEN
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

    FOR i IN 1..n_req LOOP
        v_cnt := r_count[i];
        v_start := v_k;
        v_k := v_k + v_cnt;
        v_problem := NULL;
        v_exp := r_expected[i];

        IF r_stream[i] IS NULL OR char_length(r_stream[i]) NOT BETWEEN 1 AND 256 THEN
            v_problem := 'stream_id must be 1 to 256 characters';
        ELSIF left(r_stream[i], 1) = '$' THEN
            v_problem := format('stream_id %s is reserved for the ledger''s own events', r_stream[i]);
        ELSIF v_exp IS NOT NULL AND v_exp < -1 THEN
            v_problem := format('expected version %s is not a version', v_exp);
        ELSIF char_length(r_task[i]) > 256 OR char_length(r_execution[i]) > 256
              OR char_length(r_correlation[i]) > 256 OR char_length(r_causation[i]) > 256
              OR char_length(r_agent[i]) > 256 OR r_task[i] = '' OR r_execution[i] = ''
              OR r_correlation[i] = '' OR r_causation[i] = '' OR r_agent[i] = '' THEN
            v_problem := 'task, execution, correlation, causation and agent ids must be 1 to 256 characters';
        ELSE
            FOR j IN v_start + 1 .. v_start + v_cnt LOOP
                IF e_type[j] IS NULL OR char_length(e_type[j]) NOT BETWEEN 1 AND 256 THEN
                    v_problem := 'event_type must be 1 to 256 characters';
                ELSIF e_event_id[j] IS NOT NULL AND (
                        e_event_id[j] = ANY (v_ids)
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
            FOR j IN v_start + 1 .. v_start + v_cnt LOOP
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
                    -- Recorded earlier in this batch: repeat those result rows.
                    FOR j IN v_x_res_start[v_xo] .. v_x_res_start[v_xo] + v_x_count[v_xo] - 1 LOOP
                        v_res := s[j];
                        v_res.req := i;
                        v_res.status := 'replayed';
                        n_res := n_res + 1;
                        s[n_res] := v_res;
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
            v_x_digest[v_xo] := v_digest; v_x_first_seq[v_xo] := v_seq + 1;
            v_x_count[v_xo] := v_cnt; v_x_res_start[v_xo] := n_res + 1;
        END IF;

        FOR j IN v_start + 1 .. v_start + v_cnt LOOP
            v_seq := v_seq + 1;
            v_cur := v_cur + 1;
            v_id := coalesce(e_event_id[j], gen_random_uuid());
            v_hash := canonlog.event_hash_v1(
                p_ledger, v_seq, v_id, r_stream[i], v_cur, e_type[j], e_payload[j], e_metadata[j],
                r_task[i], r_execution[i], r_correlation[i], r_causation[i], r_agent[i],
                p_writer, p_epoch, r_writer_time[i], v_now, e_signing_key_id[j], e_signature[j],
                v_prev);
            n_out := n_out + 1;
            o[n_out] := ROW(p_ledger, v_seq, v_id, r_stream[i], v_cur, e_type[j], e_payload[j],
                            e_metadata[j], r_task[i], r_execution[i], r_correlation[i],
                            r_causation[i], r_agent[i], p_writer, p_epoch, r_writer_time[i],
                            v_now, 1, v_prev, v_hash, e_signing_key_id[j], e_signature[j]);
            IF e_event_id[j] IS NOT NULL THEN
                v_ids := v_ids || v_id;
            END IF;
            n_res := n_res + 1;
            s[n_res] := ROW(i, 'ok', NULL, NULL, v_seq, v_id, v_cur, p_writer, p_epoch,
                            r_writer_time[i], v_now, v_prev, v_hash, e_signing_key_id[j],
                            e_signature[j]);
            v_prev := v_hash;
        END LOOP;
        v_version[v_so] := v_cur;
    END LOOP;

    IF n_out > 0 THEN
        PERFORM set_config('canonlog.append_guard', 'on', true);
        INSERT INTO canonlog.events SELECT * FROM unnest(o);
        IF n_x > 0 THEN
            INSERT INTO canonlog.executions SELECT * FROM unnest(x);
        END IF;
        PERFORM set_config('canonlog.append_guard', 'off', true);
        -- A wake-up hint for subscribers, delivered at commit.
        PERFORM pg_notify('canonlog_events', p_ledger || ':' || v_seq);
    END IF;

    RETURN QUERY SELECT * FROM unnest(s);
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
