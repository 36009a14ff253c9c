"""Group commit: appends from concurrent tasks share one lock, one write and one fsync."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .chain import EVENT, Fields, Record, normalise_fields

__all__ = ["GroupCommit"]

if TYPE_CHECKING:
    from .base import Ledger


class GroupCommit:
    """Appends from concurrent tasks, written together: one lock, one write, one fsync a group.

    ``await group.append(event, **fields)`` returns the record once it is on disk, exactly as
    ``AuditLog.append`` does, so an intent is still durable before its SMTP transaction. A group
    is what was handed in by the time the writing thread holds the log's lock (it may wait for
    another process's write); what comes later waits for the next one. The disk work runs in a
    worker thread, so the event loop goes on while the disk syncs. Fields are checked in
    the caller, so a refused record raises there; a failed write (or a record over the size
    cap) fails every record of its group, and nothing of that group is written.
    """

    def __init__(
        self, log: Ledger, *, max_group: int = 256, prepare: Callable[[], object] | None = None
    ) -> None:
        """``prepare``: called in the writing thread before it takes the log's lock (a guard's
        reading of what other processes wrote is then mostly done without holding it)."""
        self.log = log
        self.max_group = max(1, max_group)
        self._prepare = prepare
        self.groups = 0  # writes (and fsyncs) done
        self._pending: deque[_Pending] = deque()
        self._writer: asyncio.Task[None] | None = None
        # the group the writing thread may still take records into (``_take``); None once the
        # write was given up, so that no record is taken that nobody would answer
        self._taking: list[_Pending] | None = None
        self._taking_lock = threading.Lock()

    async def append(
        self,
        event: str,
        ready: Fields | None = None,
        keep: bytes | None = None,
        /,
        **fields: object,
    ) -> Record:
        """Queue one record and wait until it is on disk (``AuditLog.append``'s contract).
        ``ready``: more of its fields, normalised already (``normalise_fields``); ``keep``: a
        message's bytes, stored (``Ledger.store_message``) once the record is on disk, in the
        same trip to the writing thread (a trip of its own cost a message some 0.1 ms of the
        event loop, and the loop more in waits for the interpreter's lock)."""
        record = await self._queue(event, None, fields, ready, keep)
        assert record is not None
        return record

    async def append_if(
        self,
        guard: Callable[[], bool],
        event: str,
        ready: Fields | None = None,
        keep: bytes | None = None,
        /,
        **fields: object,
    ) -> Record | None:
        """As ``append``, if ``guard()`` says so; None when it does not (nothing written, nor
        kept).

        The guard runs in the writing thread, under the log's lock, just before its group is
        written: what it reads of the log cannot change before the record is on disk, so a
        check-then-claim (has another process sent this?) is atomic across processes.
        """
        return await self._queue(event, guard, fields, ready, keep)

    async def _queue(
        self,
        event: str,
        guard: Callable[[], bool] | None,
        fields: Mapping[str, object],
        ready: Fields | None,
        keep: bytes | None,
    ) -> Record | None:
        if not EVENT.fullmatch(event):
            raise ValueError(f"bad audit event name: {event!r}")
        plain = normalise_fields(fields, ready)
        done: asyncio.Future[Record | None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(event, plain, guard, done, keep))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        # shielded: a caller giving up must not cancel the write other records share
        return await asyncio.shield(done)

    async def _drain(self) -> None:
        while self._pending:
            group: list[_Pending] = []
            self._taking = group
            try:
                records = await asyncio.to_thread(self._write, group)
            except BaseException as exc:
                with self._taking_lock:
                    self._taking = None
                for pending in group:
                    if pending.done.done():
                        continue
                    if isinstance(exc, asyncio.CancelledError):
                        pending.done.cancel()
                    else:
                        pending.done.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            self.groups += 1
            for pending, record in zip(group, records, strict=True):
                if pending.done.done():
                    continue
                if isinstance(record, Exception):
                    pending.done.set_exception(record)
                else:
                    pending.done.set_result(record)

    def _write(self, group: list[_Pending]) -> list[Record | Exception | None]:
        """The group's records, as written; where a message kept with its record could not be
        stored, the error instead (the record is on disk: only its own caller hears of it)."""
        if self._prepare is not None:
            self._prepare()
        records: list[Record | Exception | None] = list(
            self.log._append_taken(functools.partial(self._take, group))
        )
        # each kept message after its record: every stored message has an intent (verify says)
        kept = [(n, p.keep) for n, p in enumerate(group) if records[n] and p.keep is not None]
        if kept:
            try:
                self.log.store_messages([raw for _, raw in kept])
            except Exception as exc:  # noqa: BLE001 - told to those who handed the messages in
                for n, _ in kept:
                    records[n] = exc
        return records

    def _take(
        self, group: list[_Pending]
    ) -> tuple[list[tuple[str, Record]], list[Callable[[], bool] | None]]:
        """The records pending, into ``group``. The writing thread asks once it holds the log's
        lock: what was handed in while it waited (another process writing) joins the group."""
        with self._taking_lock:
            while self._taking is group and self._pending and len(group) < self.max_group:
                group.append(self._pending.popleft())
        return [(p.event, p.plain) for p in group], [p.guard for p in group]


@dataclass(slots=True)
class _Pending:
    event: str
    plain: Record
    guard: Callable[[], bool] | None
    done: asyncio.Future[Record | None]
    keep: bytes | None  # a message's bytes, stored once the record is on disk
