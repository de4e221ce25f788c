-- Queries of parallel verification, run by psycopg's COPY. COPY takes no bind
-- parameters: {ledger}, {low} and {high} are filled with psycopg.sql.Literal.

-- name: copy_range
-- The events of one range in sequence order, every column the hash covers, in the
-- order of ExportedEvent's fields; BINARY so no value goes through its text form.
COPY (SELECT ledger_id, seq, event_id, stream_id, stream_version, event_type, payload, metadata,
             task_id, execution_id, correlation_id, causation_id, agent_id, writer_id, epoch,
             writer_time, recorded_at, hash_version, prev_hash, hash, signing_key_id, signature
      FROM canonlog.events
      WHERE ledger_id = {ledger} AND seq > {low} AND seq <= {high}
      ORDER BY seq)
TO STDOUT (FORMAT BINARY)
