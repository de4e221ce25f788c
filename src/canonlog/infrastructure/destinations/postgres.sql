-- Named queries of the PostgreSQL projection destination (postgres.py).

-- name: create_table
CREATE TABLE IF NOT EXISTS canonlog_projection (
    ledger_id      text NOT NULL,
    seq            bigint NOT NULL,
    hash           bytea NOT NULL,
    event_id       uuid NOT NULL,
    stream_id      text NOT NULL,
    stream_version bigint NOT NULL,
    event_type     text NOT NULL,
    payload        jsonb NOT NULL,
    metadata       jsonb NOT NULL,
    recorded_at    timestamptz NOT NULL,
    PRIMARY KEY (ledger_id, seq)
)

-- name: upsert
-- Keyed by (ledger_id, seq): a redelivered event leaves its row as it was, and a row
-- that differs from the chain is put back.
INSERT INTO canonlog_projection AS p
       (ledger_id, seq, hash, event_id, stream_id, stream_version, event_type, payload,
        metadata, recorded_at)
SELECT $1, e.seq, e.hash, e.event_id, e.stream_id, e.stream_version, e.event_type,
       convert_from(e.payload, 'UTF8')::jsonb, convert_from(e.metadata, 'UTF8')::jsonb,
       e.recorded_at
  FROM unnest($2::bigint[], $3::bytea[], $4::uuid[], $5::text[], $6::bigint[], $7::text[],
              $8::bytea[], $9::bytea[], $10::timestamptz[])
       AS e(seq, hash, event_id, stream_id, stream_version, event_type, payload, metadata,
            recorded_at)
ON CONFLICT (ledger_id, seq) DO UPDATE
   SET hash = EXCLUDED.hash, event_id = EXCLUDED.event_id, stream_id = EXCLUDED.stream_id,
       stream_version = EXCLUDED.stream_version, event_type = EXCLUDED.event_type,
       payload = EXCLUDED.payload, metadata = EXCLUDED.metadata,
       recorded_at = EXCLUDED.recorded_at
 WHERE (p.hash, p.event_id, p.stream_id, p.stream_version, p.event_type, p.payload,
        p.metadata, p.recorded_at)
       IS DISTINCT FROM
       (EXCLUDED.hash, EXCLUDED.event_id, EXCLUDED.stream_id, EXCLUDED.stream_version,
        EXCLUDED.event_type, EXCLUDED.payload, EXCLUDED.metadata, EXCLUDED.recorded_at)

-- name: digest
SELECT count(*) AS n,
       sha256(coalesce(string_agg(int8send(seq) || hash, ''::bytea ORDER BY seq), ''::bytea))
       AS digest
  FROM canonlog_projection WHERE ledger_id = $1 AND seq BETWEEN $2 AND $3

-- name: entries
SELECT seq, hash FROM canonlog_projection WHERE ledger_id = $1 AND seq BETWEEN $2 AND $3
