-- Reading what an execution id produced: the idempotency record names the first
-- sequence and the number of events of the request recorded under it, so a reader
-- finds them by the primary keys of canonlog.executions and canonlog.events
-- instead of reading a stream whole. The record holds nothing but the execution
-- id, a digest of the request and where its events are, all of which the events
-- themselves show to every runtime role already.

GRANT SELECT ON canonlog.executions TO canonlog_reader, canonlog_writer, canonlog_operator;
