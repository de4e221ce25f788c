-- Named queries of the relay's PostgreSQL adapters (relay_store.py, idempotency.py).

-- name: register_consumer
INSERT INTO canonlog.relay_consumers (consumer, ledger_id, poison_policy, max_attempts)
VALUES ($1, $2, $3, $4)
ON CONFLICT (consumer) DO UPDATE
   SET poison_policy = EXCLUDED.poison_policy, max_attempts = EXCLUDED.max_attempts
 WHERE relay_consumers.ledger_id = EXCLUDED.ledger_id
RETURNING consumer, ledger_id, cursor_seq, cursor_hash, poison_policy, max_attempts,
          paused, stopped, synced_at

-- name: consumer
SELECT consumer, ledger_id, cursor_seq, cursor_hash, poison_policy, max_attempts,
       paused, stopped, synced_at
  FROM canonlog.relay_consumers WHERE consumer = $1

-- name: consumers
SELECT consumer, ledger_id, cursor_seq, cursor_hash, poison_policy, max_attempts,
       paused, stopped, synced_at
  FROM canonlog.relay_consumers ORDER BY consumer

-- name: advance_cursor
UPDATE canonlog.relay_consumers
   SET cursor_seq = $3, cursor_hash = $4, synced_at = clock_timestamp()
 WHERE consumer = $1 AND cursor_seq = $2

-- name: clear_failures_through
DELETE FROM canonlog.relay_failures
 WHERE consumer = $1 AND status = 'failed' AND seq <= $2

-- name: record_failure
INSERT INTO canonlog.relay_failures AS f
       (consumer, seq, hash, status, attempts, last_error, next_attempt_at)
VALUES ($1, $2, $3, 'failed', 1, $4, clock_timestamp() + make_interval(secs => $5))
ON CONFLICT (consumer, seq) DO UPDATE
   SET attempts = f.attempts + 1, hash = EXCLUDED.hash, last_error = EXCLUDED.last_error,
       next_attempt_at = EXCLUDED.next_attempt_at, updated_at = clock_timestamp()
RETURNING consumer, seq, hash, status, attempts, last_error, next_attempt_at

-- name: mark_dead_letter
UPDATE canonlog.relay_failures SET status = 'dead_letter', updated_at = clock_timestamp()
 WHERE consumer = $1 AND seq = $2

-- name: failures
SELECT consumer, seq, hash, status, attempts, last_error, next_attempt_at
  FROM canonlog.relay_failures
 WHERE consumer = $1 AND (NOT $2 OR status = 'dead_letter')
 ORDER BY seq LIMIT $3

-- name: resolve_failure
DELETE FROM canonlog.relay_failures WHERE consumer = $1 AND seq = $2

-- name: set_paused
UPDATE canonlog.relay_consumers
   SET paused = $2, stopped = CASE WHEN $2 THEN stopped END
 WHERE consumer = $1
RETURNING consumer, ledger_id, cursor_seq, cursor_hash, poison_policy, max_attempts,
          paused, stopped, synced_at

-- name: stop_consumer
UPDATE canonlog.relay_consumers SET stopped = $2 WHERE consumer = $1

-- name: idempotency_get
SELECT result::text FROM canonlog.idempotency_records
 WHERE key = $1 AND expires_at > clock_timestamp()

-- name: idempotency_put
-- An expired record is replaced; a live one wins, and is returned.
INSERT INTO canonlog.idempotency_records AS r (key, result, expires_at)
VALUES ($1, $2::jsonb, clock_timestamp() + make_interval(secs => $3))
ON CONFLICT (key) DO UPDATE
   SET result = EXCLUDED.result, created_at = clock_timestamp(), expires_at = EXCLUDED.expires_at
 WHERE r.expires_at <= clock_timestamp()
RETURNING result::text

-- name: idempotency_delete_expired
DELETE FROM canonlog.idempotency_records WHERE expires_at <= clock_timestamp()
