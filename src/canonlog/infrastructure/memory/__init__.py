"""The in-memory adapters: the event log (held to the same rules as PostgreSQL) and the
writer lease, for canonlog.testing, demos and the contract tests."""

from __future__ import annotations

from canonlog.infrastructure.memory.event_log import MemoryEventLog
from canonlog.infrastructure.memory.lease import InMemoryLease

__all__ = ["InMemoryLease", "MemoryEventLog"]
