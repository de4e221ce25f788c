-- Named queries of the saga backends and locks. The backends' tables live in the
-- user's database and are created by the backends (ensure_schema), not by
-- canonlog's migrations. Every write is keyed by the step's idempotency key.

-- name: try_lock
-- Session-level, so the lock goes when the holder's connection does:
-- https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS
SELECT pg_try_advisory_lock(1668050793, hashtext($1)) AS held

-- name: unlock
SELECT pg_advisory_unlock(1668050793, hashtext($1)) AS released

-- name: graph_schema
CREATE TABLE IF NOT EXISTS canonlog_graph_nodes (
    node_id    text PRIMARY KEY,
    label      text NOT NULL,
    properties jsonb NOT NULL DEFAULT '{}',
    saga_key   text NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS canonlog_graph_edges (
    source     text NOT NULL REFERENCES canonlog_graph_nodes ON DELETE CASCADE,
    label      text NOT NULL,
    target     text NOT NULL REFERENCES canonlog_graph_nodes ON DELETE CASCADE,
    properties jsonb NOT NULL DEFAULT '{}',
    saga_key   text NOT NULL UNIQUE,
    PRIMARY KEY (source, label, target)
);

-- name: graph_add_node
INSERT INTO canonlog_graph_nodes (node_id, label, properties, saga_key)
VALUES ($1, $2, $3::jsonb, $4)
ON CONFLICT (saga_key) DO NOTHING
RETURNING node_id

-- name: graph_add_edge
INSERT INTO canonlog_graph_edges (source, label, target, properties, saga_key)
VALUES ($1, $2, $3, $4::jsonb, $5)
ON CONFLICT (saga_key) DO NOTHING
RETURNING source

-- name: graph_delete
WITH edges AS (DELETE FROM canonlog_graph_edges WHERE saga_key = $1)
DELETE FROM canonlog_graph_nodes WHERE saga_key = $1

-- name: vector_available
SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') AS available

-- name: vector_schema
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS canonlog_vector_chunks (
    saga_key    text NOT NULL,
    chunk_no    integer NOT NULL,
    document_id text NOT NULL,
    content     text NOT NULL,
    embedding   vector NOT NULL,
    PRIMARY KEY (saga_key, chunk_no)
);
CREATE INDEX IF NOT EXISTS canonlog_vector_chunks_document ON canonlog_vector_chunks (document_id);

-- name: vector_insert
INSERT INTO canonlog_vector_chunks (saga_key, chunk_no, document_id, content, embedding)
SELECT $1, c.n - 1, $2, c.content, c.embedding::vector
FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS c(content, embedding, n)
ON CONFLICT (saga_key, chunk_no) DO NOTHING
RETURNING chunk_no

-- name: vector_delete
DELETE FROM canonlog_vector_chunks WHERE saga_key = $1

-- name: vector_nearest
SELECT document_id, chunk_no, content, embedding <-> $1::vector AS distance
FROM canonlog_vector_chunks ORDER BY embedding <-> $1::vector LIMIT $2

-- name: relational_columns
SELECT a.attname AS name
FROM pg_attribute a
WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
