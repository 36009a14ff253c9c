"""A batch's resolution records: on disk before anything is sent on their strength.

Addresses that resolved alike (a network range's, mostly) share one record rather than one
each: alike in all but what is theirs alone, their host names and their PTR answer, which the
record lists per address (``addresses``). Every address has its own PTR name, so a record per
distinct resolution would be a record per address: 10,000 addresses in 300 ranges made 5,404
records, 818 this way, and writing them cost an eighth of the lookups' CPU while the registries'
turns waited on it.

The records are written every ``LOG_EVERY`` addresses or ``LOG_SECONDS`` while the lookups go
on, not all between the last lookup and the first message, where they cost the run's critical
path (0.7 s of a 10,000-address batch when each address had its own); a range split over two
writes gets two records. Once reverse DNS is done for every address, what is left resolves as
the registries answer, a network at a time, and the records are written every
``TAIL_SECONDS``: the last write, which the first message waits for, then holds a quarter of a
second's ranges, not two seconds' (43 ms of CPU at the 3k benchmark's end, 8 ms now).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from ..errors import AuditError
from ..ledger import Record
from ..models import Resolution
from ..outcome import address_record, shared_evidence
from ..pipeline import Notifier, resolution_record

__all__ = ["LOG_EVERY", "LOG_SECONDS", "TAIL_SECONDS", "ResolutionLog"]

LOG_EVERY = 4096  # addresses resolved between two writes of resolution records, at most
LOG_SECONDS = 2.0  # seconds between two writes, at most (while addresses resolve)
TAIL_SECONDS = 0.25  # the same once reverse DNS is done for every address
_IPS_PER_RECORD = 256  # addresses one record names: each may bring ten PTR names, 2.8 kB


class ResolutionLog:
    """Resolutions grouped by what they say, written to the audit log as they accumulate."""

    def __init__(self, notifier: Notifier, tail: Callable[[], bool]) -> None:
        self._notifier = notifier
        self._tail = tail  # whether reverse DNS is done for every address
        self._alike: dict[tuple[Any, ...], list[Resolution]] = {}
        self._grouped = 0  # addresses in ``_alike``
        self._writing: list[asyncio.Future[list[Record]]] = []
        self._wrote = time.monotonic()

    def add(self, resolution: Resolution) -> None:
        """Keep ``resolution`` for the log, with the others that say the same of their address."""
        key = (
            resolution.recipients,
            resolution.fallbacks,
            resolution.network,
            resolution.errors,
            shared_evidence(resolution),
            resolution.channels,
            resolution.hints,
        )
        try:
            group = self._alike.get(key)
        except TypeError:  # something unhashable in it: a record of its own
            self._alike[(id(resolution),)] = [resolution]
            return
        if group is None:
            self._alike[key] = [resolution]
        else:
            group.append(resolution)
        self._grouped += 1
        since = time.monotonic() - self._wrote
        if self._grouped >= LOG_EVERY or since >= (TAIL_SECONDS if self._tail() else LOG_SECONDS):
            written = self._write()
            written.add_done_callback(self._read_back)
            self._writing.append(written)

    async def written(self) -> None:
        """Until every record is on disk: those written while the lookups went on, and the
        rest."""
        await asyncio.gather(*self._writing, self._write())
        self._writing = []

    def _read_back(self, written: asyncio.Future[list[Record]]) -> None:
        # the sender's view of the log (and what earlier runs wrote) read now, while the
        # lookups go on, rather than all at the first message; a failure is raised there
        if not written.cancelled() and written.exception() is None:
            with contextlib.suppress(AuditError):
                self._notifier.gate.refresh()

    def _write(self) -> asyncio.Future[list[Record]]:
        """The groups so far, taken now; the writes are done when the answer is."""
        groups = list(self._alike.values())
        self._alike = {}
        self._grouped = 0
        self._wrote = time.monotonic()
        return asyncio.ensure_future(self._append(groups))

    async def _append(self, groups: list[list[Resolution]]) -> list[Record]:
        """Each group's records, prepared a slice at a time: a thousand at once would hold the
        event loop (and the registries' turns waiting on it) for tens of milliseconds. Appends
        handed in meanwhile still share writes and fsyncs.

        A record is its first address's resolution, whole, with the others in ``ips`` and,
        with what is theirs alone, in ``addresses``."""
        writes: list[asyncio.Future[Record]] = []
        for group in groups:
            for start in range(0, len(group), _IPS_PER_RECORD):
                first, *more = group[start : start + _IPS_PER_RECORD]
                record = resolution_record(first)
                record["ips"] = [str(r.target.ip) for r in more]
                record["addresses"] = [address_record(r) for r in more]
                writes.append(asyncio.ensure_future(self._notifier.log("resolution", **record)))
                await asyncio.sleep(0)  # its first step (the fields checked) runs now, alone
        return list(await asyncio.gather(*writes))
