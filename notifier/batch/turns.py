"""The lookup stages' bookkeeping: turns on the event loop, registry answers by range, and
whether the resolver has gone silent."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import deque

from ..models import IPAddress, SourceReport

__all__ = ["Answered", "Silence", "Turns"]

_SILENT_RUN = 32  # unanswered queries in a row after which the resolver counts as silent
_PROBE_EVERY = 1.0  # seconds between queries to a silent resolver


class Turns:
    """At most ``per_tick`` turns each iteration of the event loop.

    The DNS and finishing stages are wide and mostly CPU: hundreds of them ready at once would
    make one iteration of the loop last a second, and every step of a registry fetch (connect,
    TLS, request, answer) waits for an iteration, so the rate-limited critical path would crawl
    and its deadlines expire. Taking turns keeps each iteration short; the bulk work is the same.
    """

    def __init__(self, per_tick: int) -> None:
        self._per_tick = per_tick
        self._spent = 0
        self._reset_due = False
        # the waiting, longest first: each iteration wakes only as many as it has turns for
        # (waking them all to find most of them must wait again cost more than the work);
        # the first queue's before the second's
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._later: deque[asyncio.Future[None]] = deque()

    def _schedule(self) -> None:
        if not self._reset_due:
            self._reset_due = True
            asyncio.get_running_loop().call_soon(self._reset)

    def _reset(self) -> None:
        self._reset_due = False
        self._spent = 0
        for waiters in (self._waiters, self._later):
            while waiters and self._spent < self._per_tick:
                waiter = waiters.popleft()
                if not waiter.done():  # a cancelled waiter takes no turn
                    waiter.set_result(None)
                    self._spent += 1
        if self._spent:
            self._schedule()

    async def take(self, *, later: bool = False) -> None:
        """A turn; ``later``: after every turn asked for without it."""
        if self._spent < self._per_tick and not self._waiters and not self._later:
            self._spent += 1
            self._schedule()
            return
        waiter = asyncio.get_running_loop().create_future()
        (self._later if later else self._waiters).append(waiter)
        self._schedule()
        await waiter  # the turn was counted when it was handed over


class Answered:
    """Registry answers by network range: which one already speaks for an address."""

    def __init__(self) -> None:
        self._by_length: dict[tuple[int, int], dict[int, list[SourceReport]]] = {}

    def add(self, cidr: str, reports: list[SourceReport]) -> None:
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return
        key = (net.version, net.prefixlen)
        self._by_length.setdefault(key, {})[int(net.network_address)] = reports

    def get(self, ip: IPAddress) -> list[SourceReport] | None:
        best: list[SourceReport] | None = None
        best_length = -1
        for (version, length), starts in self._by_length.items():
            if version != ip.version or length <= best_length:
                continue
            shift = ip.max_prefixlen - length
            found = starts.get(int(ip) >> shift << shift)
            if found is not None:
                best, best_length = found, length
        return best


class Silence:
    """A resolver that leaves a run of queries unanswered is asked no more but for one probe a
    second, until it answers again: the addresses meanwhile skip reverse DNS, with the reason."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._silent = 0  # queries in a row that ran out of time
        self._next_probe = 0.0

    def skip(self) -> str | None:
        """Why this query is not asked, or None: ask it (and note it as this second's probe)."""
        now = time.monotonic()
        if self._silent >= _SILENT_RUN and now < self._next_probe:
            return f"not asked: the resolver left the last {self._silent} queries unanswered"
        self._next_probe = now + _PROBE_EVERY
        return None

    def answered(self, failed: bool, took: float) -> None:
        self._silent = self._silent + 1 if failed and took >= self._timeout * 0.9 else 0
