-- Reading what an execution id produced. The idempotency record names the first
-- sequence and the number of events of the request recorded under an execution id,
-- so the events are found by the primary keys of canonlog.executions and
-- canonlog.events instead of by reading a stream whole. The record itself stays
-- the append path's: runtime roles still cannot read it, and this function, which
-- runs as the owner, answers only with events, which every runtime role may read.

SET LOCAL ROLE canonlog_owner;

CREATE FUNCTION canonlog.read_execution_v1(p_ledger text, p_execution_id text)
RETURNS SETOF canonlog.events
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $body$
    SELECT e.*
    FROM canonlog.executions x
    JOIN canonlog.events e ON e.ledger_id = x.ledger_id
        AND e.seq BETWEEN x.first_seq AND x.first_seq + x.event_count - 1
    WHERE x.ledger_id = p_ledger AND x.execution_id = p_execution_id
    ORDER BY e.seq
$body$;
REVOKE ALL ON FUNCTION canonlog.read_execution_v1(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION canonlog.read_execution_v1(text, text)
    TO canonlog_reader, canonlog_writer, canonlog_operator;
