"""Saga backends (relational, graph and vector on PostgreSQL, key-value on Redis or
Valkey, files in a directory) and the per-saga PostgreSQL lock."""
