-- The relay: consumers that deliver the chain to secondary stores, and the
-- idempotency records of requests that arrive from outside.
--
-- A consumer's cursor is (cursor_seq, cursor_hash): the last event its
-- destination confirmed and that event's hash, so a rewritten chain is noticed.
-- Events at or below the cursor are synced; relay_failures holds the events that
-- failed (retrying, or dead-lettered for an operator); every other event after
-- the cursor is pending. None of these tables is part of the chain: they hold
-- positions and outcomes, and the relay's role may change them. They are owned by
-- canonlog_owner; canonlog_relay holds only the privileges the relay uses.

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'canonlog_relay') THEN
        CREATE ROLE canonlog_relay NOLOGIN;
    END IF;
END
$roles$;

GRANT USAGE ON SCHEMA canonlog TO canonlog_relay;
GRANT SELECT ON canonlog.schema_migrations TO canonlog_relay;

SET LOCAL ROLE canonlog_owner;

CREATE TABLE canonlog.relay_consumers (
    consumer      text PRIMARY KEY CHECK (char_length(consumer) BETWEEN 1 AND 128),
    ledger_id     text NOT NULL CHECK (char_length(ledger_id) BETWEEN 1 AND 256),
    cursor_seq    bigint NOT NULL DEFAULT 0 CHECK (cursor_seq >= 0),
    cursor_hash   bytea CHECK (cursor_hash IS NULL OR octet_length(cursor_hash) = 32),
    poison_policy text NOT NULL DEFAULT 'dead_letter'
                  CHECK (poison_policy IN ('stop', 'dead_letter')),
    max_attempts  integer NOT NULL DEFAULT 8 CHECK (max_attempts >= 1),
    paused        boolean NOT NULL DEFAULT false,
    stopped       text,
    synced_at     timestamptz,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT relay_consumers_cursor_hash CHECK ((cursor_seq = 0) = (cursor_hash IS NULL))
);

CREATE TABLE canonlog.relay_failures (
    consumer        text NOT NULL REFERENCES canonlog.relay_consumers (consumer),
    seq             bigint NOT NULL CHECK (seq >= 1),
    hash            bytea NOT NULL CHECK (octet_length(hash) = 32),
    status          text NOT NULL CHECK (status IN ('failed', 'dead_letter')),
    attempts        integer NOT NULL CHECK (attempts >= 1),
    last_error      text NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT relay_failures_pkey PRIMARY KEY (consumer, seq)
);

CREATE INDEX relay_failures_status ON canonlog.relay_failures (consumer, status, seq);

-- Results of outside requests by their key; unlike execution ids these expire.
CREATE TABLE canonlog.idempotency_records (
    key        text PRIMARY KEY CHECK (char_length(key) BETWEEN 1 AND 512),
    result     jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at timestamptz NOT NULL
);

CREATE INDEX idempotency_records_expiry ON canonlog.idempotency_records (expires_at);


-- Consumers are registered and moved, never deleted; failures are cleared once
-- their event is synced or replayed; idempotency records are deleted once expired.
GRANT SELECT, INSERT, UPDATE ON canonlog.relay_consumers TO canonlog_relay;
GRANT SELECT, INSERT, UPDATE, DELETE ON canonlog.relay_failures TO canonlog_relay;
GRANT SELECT, INSERT, UPDATE, DELETE ON canonlog.idempotency_records TO canonlog_relay;
-- Readers and operators see how far each consumer is.
GRANT SELECT ON canonlog.relay_consumers, canonlog.relay_failures
    TO canonlog_reader, canonlog_operator;
