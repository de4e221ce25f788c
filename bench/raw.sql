-- The `raw` peer: the same event shape in a plain table with no integrity at all
-- (no chain, no fencing, no halt check, no append-only triggers). It is the
-- ceiling the other systems are measured against.

-- name: create_table
CREATE SCHEMA bench_raw;
CREATE TABLE bench_raw.events (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id       uuid NOT NULL DEFAULT gen_random_uuid(),
    stream_id      text NOT NULL,
    stream_version bigint NOT NULL,
    event_type     text NOT NULL,
    payload        bytea NOT NULL,
    metadata       bytea NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- name: insert_one
INSERT INTO bench_raw.events (stream_id, stream_version, event_type, payload, metadata)
VALUES ($1, $2, $3, $4, $5)

-- name: insert_many
INSERT INTO bench_raw.events (stream_id, stream_version, event_type, payload, metadata)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bytea[], $5::bytea[])

-- name: count
SELECT count(*) FROM bench_raw.events
