"""One EventLog over the logins of PostgreSQL's roles, each step run as its own."""

from __future__ import annotations

from typing import Any

from canonlog.application.ports import EventLog

#: The administrator's and the writer's steps; every other one is the operator's.
ADMIN_STEPS = {"establish_policy"}
WRITER_STEPS = {"acquire_grant", "release_grant", "append_batch", "append"}


class ByRole:
    """One EventLog whose steps each run as the login they belong to."""

    def __init__(self, writer: EventLog, operator: EventLog, admin: EventLog) -> None:
        self.writer, self.operator, self.admin = writer, operator, admin

    def __getattr__(self, name: str) -> Any:
        log = (self.admin if name in ADMIN_STEPS else self.writer if name in WRITER_STEPS
               else self.operator)
        return getattr(log, name)

    async def close(self) -> None:
        for log in (self.writer, self.operator, self.admin):
            await log.close()


async def by_role(adapter: Any, database: Any) -> ByRole:
    """A ByRole of adapter (AsyncpgEventLog or PsycopgEventLog) connections to the
    test database: the application's, the operator's and the administrator's logins."""
    return ByRole(*[await adapter.connect(target.uri())
                    for target in (database.app, database.operator, database.admin)])
