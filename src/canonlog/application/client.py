"""The in-process API domain services use: append through the writer, read, subscribe."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime

import structlog

from canonlog.application.ports import AppendResult, EventNotifier, EventReader
from canonlog.application.writer import EventWriterService
from canonlog.domain.errors import InvalidEvent, StorageError
from canonlog.domain.events import (
    DEFAULT_LIMITS,
    AppendRequest,
    ExpectedVersion,
    Head,
    Limits,
    NewEvent,
    RecordedEvent,
    RegisteredKey,
    StreamState,
    WriteContext,
)
from canonlog.domain.signing import signable_content_v1, signature_is_valid

logger = structlog.get_logger("canonlog.client")

#: Called with the stream and the execution id of every append before it is queued;
#: raises to refuse it.
StreamGuard = Callable[[str, str | None], None]


class PollingNotifier:
    """An EventNotifier with no channel: every wait lasts its timeout."""

    async def wait(self, ledger_id: str, after: int, timeout: float) -> None:
        await asyncio.sleep(timeout)


class LedgerClient:
    """One ledger, as a domain service sees it (implements the EventStore port)."""

    def __init__(
        self,
        writer: EventWriterService,
        event_log: EventReader,
        ledger_id: str,
        *,
        notifier: EventNotifier | None = None,
        limits: Limits = DEFAULT_LIMITS,
        stream_guard: StreamGuard | None = None,
    ) -> None:
        self._writer = writer
        self._stream_guard = stream_guard
        self._event_log = event_log
        self._ledger_id = ledger_id
        self._notifier = notifier or PollingNotifier()
        self._limits = limits
        self._keys: dict[str, RegisteredKey] = {}

    @property
    def ledger_id(self) -> str:
        return self._ledger_id

    @property
    def writer(self) -> EventWriterService:
        return self._writer

    @property
    def event_log(self) -> EventReader:
        """The store this client reads from (and its writer writes to)."""
        return self._event_log

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: ExpectedVersion = StreamState.ANY,
        execution_id: str | None = None,
        task_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        agent_id: str | None = None,
    ) -> AppendResult:
        """Appends events atomically to one stream and returns them as recorded.

        Raises InvalidEvent before anything is queued, ConcurrencyConflict when the
        stream has moved past expected_version, IdempotencyConflict when execution_id
        was used for a different request, SystemHalted when the ledger is halted,
        WriterLeaseLost or WriterNotVerified when this process may not write now, and
        WriterStopped when its writer has stopped for good; the client's stream guard
        may refuse a stream or an execution id (GovernedStreamRefused, for the write
        gateway's).
        """
        if self._stream_guard is not None:
            self._stream_guard(stream_id, execution_id)
        request = AppendRequest.create(
            stream_id, tuple(events), expected_version=expected_version,
            context=WriteContext(task_id=task_id, execution_id=execution_id,
                                 correlation_id=correlation_id, causation_id=causation_id,
                                 agent_id=agent_id, writer_time=datetime.now(UTC)),
            limits=self._limits,
        )
        for event in request.events:
            if event.signature is not None:
                await self._check_signatures(request)
                break
        return await self._writer.append(request)

    async def _check_signatures(self, request: AppendRequest) -> None:
        """Refuses a bad signature before it is queued. The database checks that the
        key is registered to the agent and active; only a holder of the public key
        can check the signature itself, so this does, and so does the verifier."""
        agent_id = request.context.agent_id
        for event in request.events:
            if event.signature is None or event.signing_key_id is None:
                continue
            key = self._keys.get(event.signing_key_id)
            if key is None:
                self._keys = {k.key_id: k for k in await self._event_log.list_keys(self._ledger_id)}
                key = self._keys.get(event.signing_key_id)
            if key is None or event.event_id is None or agent_id is None:
                continue  # the database refuses it with the precise reason
            content = signable_content_v1(
                ledger_id=self._ledger_id, event_id=event.event_id, stream_id=request.stream_id,
                event_type=event.event_type, payload=event.payload, metadata=event.metadata,
                task_id=request.context.task_id, execution_id=request.context.execution_id,
                correlation_id=request.context.correlation_id,
                causation_id=request.context.causation_id, agent_id=agent_id,
                signing_key_id=event.signing_key_id,
            )
            if not signature_is_valid(key.public_key, event.signature, content):
                raise InvalidEvent(
                    f"the signature of event {event.event_id} by key {event.signing_key_id} "
                    "does not verify"
                )

    async def read_stream(
        self, stream_id: str, *, from_version: int = 1, limit: int | None = None
    ) -> list[RecordedEvent]:
        return await self._event_log.read_stream(self._ledger_id, stream_id,
                                           from_version=from_version, limit=limit)

    async def read_all(self, *, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        return await self._event_log.read_all(self._ledger_id, after=after, limit=limit)

    async def head(self) -> Head:
        return await self._event_log.head(self._ledger_id)

    async def subscribe(
        self, *, after: int = 0, page_size: int = 500, poll_interval: float = 1.0
    ) -> AsyncIterator[RecordedEvent]:
        """Yields every event after `after`, in sequence order, then new ones as they commit.

        Notifications only wake the subscriber early; it re-reads from its own
        position every time, so a lost notification delays an event by at most
        poll_interval and never skips one. While the database is unreachable
        (StorageError) the subscription logs it and keeps retrying from its
        position every poll_interval; other errors end it by raising.
        """
        position = after
        while True:
            try:
                page = await self._event_log.read_all(self._ledger_id, after=position,
                                                      limit=page_size)
            except StorageError as exc:
                logger.warning("subscription cannot read; retrying", ledger_id=self._ledger_id,
                               after=position, error=str(exc))
                await asyncio.sleep(poll_interval)
                continue
            for event in page:
                yield event
                position = event.sequence
            if len(page) < page_size:
                await self._notifier.wait(self._ledger_id, position, poll_interval)
