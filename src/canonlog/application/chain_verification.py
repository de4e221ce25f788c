"""Verifying a chain in one pass: the events of an export, or a store read page by page.

Each event is fed to one ChainVerifier in sequence order; memory holds only what
the verifier keeps (the previous hash, each stream's last version, the keys and
policies of the ledger's own events), so it does not grow with the ledger.
canonlog.application.range_verification checks ranges alone and joins them, for
callers that divide the work.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

from canonlog.application.ports import EventReader, ProgressCallback
from canonlog.application.stored_governance import compare_stored_governance
from canonlog.application.verifier import (
    ChainReport,
    ChainVerifier,
    SignaturePolicy,
    VerifiableEvent,
)
from canonlog.domain.events import SYSTEM_STREAM, Head, RecordedEvent

DEFAULT_PAGE_SIZE = 5000


def verify_events(
    events: Iterable[VerifiableEvent],
    ledger_id: str,
    *,
    after: Head | None = None,
    until: int | None = None,
    signatures: SignaturePolicy = "check",
    progress: ProgressCallback | None = None,
    progress_every: int = 10_000,
) -> ChainReport:
    """Verifies events given in sequence order (an export), with no store.

    From the start of the ledger, every event is checked. Given after (a head
    the caller trusts), the events up to after.sequence only teach the keys they
    register, and the first event past it must link to after.hash; given until,
    events past it are left out.
    """
    verifier = _verifier(ledger_id, after, signatures)
    start = verifier.after_sequence
    count = 0
    for event in events:
        if start and event.sequence <= start:
            verifier.learn_keys_before_start(event)
            continue
        if until is not None and event.sequence > until:
            continue
        verifier.add(event)
        count += 1
        if progress is not None and count % progress_every == 0:
            progress(count)
    report = verifier.report()
    if progress is not None:
        progress(report.events_checked)
    return report


def _verifier(ledger_id: str, after: Head | None, signatures: SignaturePolicy) -> ChainVerifier:
    if after is None:
        return ChainVerifier(ledger_id, signatures=signatures)
    return ChainVerifier(ledger_id, after_sequence=after.sequence, after_hash=after.hash,
                         signatures=signatures)


async def _pages(reader: EventReader, ledger_id: str, after: int, until: int | None,
                 page_size: int) -> AsyncIterator[list[RecordedEvent]]:
    # Fetch the next page while the current one is being hashed.
    pending = asyncio.ensure_future(reader.read_all(ledger_id, after=after, limit=page_size))
    while True:
        page = await pending
        if until is not None:
            page = [e for e in page if e.sequence <= until]
        if not page:
            return
        last = page[-1].sequence
        done = len(page) < page_size or (until is not None and last >= until)
        if not done:
            pending = asyncio.ensure_future(reader.read_all(ledger_id, after=last, limit=page_size))
        yield page
        if done:
            return


async def verify_chain(
    reader: EventReader,
    ledger_id: str,
    *,
    after: Head | None = None,
    until: int | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    signatures: SignaturePolicy = "check",
    progress: ProgressCallback | None = None,
) -> ChainReport:
    """Verifies a ledger's chain read page by page from a store, with nothing else trusted.

    From the start of the ledger unless given after (a head the caller trusts): the
    first event past it must then link to after.hash, and the keys registered before
    it are learnt from the ledger's own stream, each of those events checked against
    its own hash. verify_ledger is the verification use case built on this one.
    """
    verifier = _verifier(ledger_id, after, signatures)
    if verifier.after_sequence > 0 and signatures != "ignore":
        for event in await reader.read_stream(ledger_id, SYSTEM_STREAM):
            if event.sequence > verifier.after_sequence:
                break
            verifier.learn_keys_before_start(event)
    checked = 0
    async for page in _pages(reader, ledger_id, verifier.after_sequence, until, page_size):
        for event in page:
            verifier.add(event)
        checked += len(page)
        if progress is not None:
            progress(checked)
    if signatures != "ignore":
        await compare_stored_governance(verifier, reader, ledger_id, to_head=until is None)
    return verifier.report()
