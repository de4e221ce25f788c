"""The compensation registry: named handlers that undo a saga step, and the defaults."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from canonlog.application.ports import CompensationHandler, SagaBackend
from canonlog.domain.errors import InvalidSaga
from canonlog.domain.saga import SagaStep

#: The default handlers and the backend kind each undoes.
DEFAULT_COMPENSATIONS: Final = {
    "relational_delete": "relational",
    "kv_delete": "kv",
    "file_delete": "file",
    "vector_delete_chunks": "vector",
    "graph_delete_node": "graph",
}


async def remove_created(backend: SagaBackend, step: SagaStep) -> None:
    """Deletes what the step created on its backend (the row, key, file, chunks or node);
    succeeds when it is already gone."""
    await backend.remove(step)


class CompensationRegistry:
    """Compensation handlers by name, each optionally bound to one backend kind."""

    def __init__(self) -> None:
        self._handlers: dict[str, tuple[CompensationHandler, str | None]] = {}

    def register(self, name: str, handler: CompensationHandler, *, kind: str | None = None) -> None:
        """Registers handler under name (replacing any before); kind, when given, is the
        backend kind it undoes, and a step on another kind naming it is refused."""
        if not isinstance(name, str) or not name:
            raise InvalidSaga("a compensation needs a non-empty name")
        self._handlers[name] = (handler, kind)

    def get(self, name: str) -> CompensationHandler:
        """Returns the handler registered as name; raises InvalidSaga when there is none."""
        try:
            return self._handlers[name][0]
        except KeyError:
            raise InvalidSaga(f"no compensation is registered as {name!r}") from None

    def kinds(self) -> Mapping[str, str | None]:
        return {name: kind for name, (_, kind) in self._handlers.items()}

    @classmethod
    def with_defaults(cls) -> CompensationRegistry:
        """A registry holding relational_delete, kv_delete, file_delete,
        vector_delete_chunks and graph_delete_node."""
        registry = cls()
        for name, kind in DEFAULT_COMPENSATIONS.items():
            registry.register(name, remove_created, kind=kind)
        return registry
