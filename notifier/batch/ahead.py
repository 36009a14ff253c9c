"""A batch's messages composed while its lookups go on, not all after the last one.

Each recipient's message can only be sent once every lookup is done (a late address may still
be theirs), but it can be written before. Once the input is read and reverse DNS is done for
every address (before, the cores are the lookups'), a recipient whose addresses have not changed
for ``SETTLE`` seconds has its messages composed in the compose workers: the same messages the
delivery round will ask for (same contact, findings in the same order, same split). When the
round asks, the message is there; if a late address changed the recipient's share after all,
the message composed ahead is dropped and the new one composed then. Only the first round's
recipients (the chosen ones, not the fallbacks a failure would climb to).
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Callable, Hashable, Mapping

from ..ladder import SendOptions
from ..models import Contact, Finding, Network
from ..pipeline import Notifier
from .columns import Columns
from .states import Plan, Route

__all__ = ["SETTLE", "Ahead"]

SETTLE = 0.1  # seconds a recipient's addresses stay the same before its messages are composed
_LOOK_EVERY = 0.1  # seconds between two looks for settled recipients
_FULL_WAIT = 0.01  # seconds before asking again when the workers had enough in hand
_INDEX_SLICE = 16_384  # rows indexed between two turns of the event loop
# seconds one look spends handing jobs to the workers: a hundred recipients settling together
# held the event loop (and the registries' turns waiting on it) for 30 ms
_LOOK_BUDGET = 0.004
_KEEP_MOST = 100_000  # findings kept for the round (``give``): a few MB


class Ahead:
    """Which recipient has which addresses so far, and their messages composed ahead."""

    def __init__(
        self,
        notifier: Notifier,
        rows: Columns,
        route_of: Callable[[int], Route | None],
        options: SendOptions,
        idle: Callable[[], bool],
    ) -> None:
        self._notifier = notifier
        self._rows = rows
        self._route_of = route_of  # an address's route, once resolved
        self._options = options
        self._idle = idle  # whether the lookups leave room on the cores for composing
        self._limit = notifier.settings.batch.max_findings_per_message
        self._addresses: dict[str, list[int]] = {}  # recipient -> its addresses so far
        self._changed: dict[str, float] = {}  # recipient -> when its share last changed
        self._keys: dict[str, list[Hashable]] = {}  # recipient -> its messages composed ahead
        # recipient -> its rows and their findings, as composed ahead (``give``)
        self._built: dict[str, tuple[array[int], list[Finding]]] = {}
        self._kept = 0  # findings in ``_built``
        self._starts = array("I")  # per address, where its rows begin in ``_by_ip``
        self._by_ip = array("I")  # row numbers, grouped by address, ascending in each
        self._task: asyncio.Task[None] | None = None

    def resolved(self, ip_id: int, route: Route) -> None:
        """Address ``ip_id`` goes to ``route``'s recipients."""
        now = time.monotonic()
        for contact in route.recipients:
            self._addresses.setdefault(contact.address, []).append(ip_id)
            self._changed[contact.address] = now
            keys = self._keys.pop(contact.address, None)
            if keys:
                self._notifier.drop_ahead(keys)  # its share grew: not that message after all
            self._forget(contact.address)

    def give(self, plans: Mapping[str, Plan]) -> None:
        """The round's plans take their findings as composing built them, where a recipient's
        share is the one composed (10,000 built again cost 25 ms after the last lookup); the
        rest goes."""
        for address, plan in plans.items():
            built = self._built.get(address)
            if built is not None and built[0] == plan.rows:
                plan.findings = built[1]
        self._built, self._kept = {}, 0

    def _forget(self, address: str) -> None:
        built = self._built.pop(address, None)
        if built is not None:
            self._kept -= len(built[1])

    def start(self) -> None:
        """The input is read (every address's findings are known): compose from now on."""
        self._task = asyncio.get_running_loop().create_task(self._composing())

    async def stop(self) -> None:
        """The lookups are done: every share is final. What is composed is kept for the round;
        the shares that changed too late to settle are started now, in the round's order (the
        round would ask for each in its turn, and the last of a dozen came 0.35 s into it)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if len(self._by_ip) != len(self._rows.row_ip):
            return  # not indexed yet: reverse DNS was still going on, nothing was composed
        for address in sorted(self._changed):
            keys = self._compose(address)
            if keys is None:
                break  # the workers have enough in hand: the round composes the rest
            self._keys[address] = keys
        self._changed.clear()

    async def _index(self) -> None:
        """Each address's rows (a counting sort over the row column), a slice a loop turn: a
        million rows in one go would hold the registries' turns for half a second."""
        row_ip = self._rows.row_ip
        counts = array("I", bytes(4 * (len(self._rows.ips) + 1)))
        for begin in range(0, len(row_ip), _INDEX_SLICE):
            for ip_id in row_ip[begin : begin + _INDEX_SLICE]:
                counts[ip_id + 1] += 1
            await asyncio.sleep(0)
        for ip_id in range(1, len(counts)):
            counts[ip_id] += counts[ip_id - 1]
        self._starts = array("I", counts)
        by_ip = array("I", bytes(4 * len(row_ip)))
        for begin in range(0, len(row_ip), _INDEX_SLICE):
            for row in range(begin, min(begin + _INDEX_SLICE, len(row_ip))):
                ip_id = row_ip[row]
                by_ip[counts[ip_id]] = row
                counts[ip_id] += 1
            await asyncio.sleep(0)
        self._by_ip = by_ip

    async def _composing(self) -> None:
        # the index waits, like the composing, for reverse DNS to end (a state polled, not an
        # event anyone sets)
        while not self._idle():  # noqa: ASYNC110
            await asyncio.sleep(_LOOK_EVERY)
        await self._index()
        pause = _LOOK_EVERY
        while True:  # noqa: ASYNC110 - a look at the time that passed, not a wait for one event
            await asyncio.sleep(pause)
            pause = self._look()

    def _look(self) -> float:
        """Compose what has settled; how long until the next look."""
        if not self._idle():
            return _LOOK_EVERY
        now = time.monotonic()
        for address, changed in list(self._changed.items()):
            if now - changed < SETTLE:
                continue
            keys = self._compose(address)
            if keys is None:
                return _FULL_WAIT  # the workers have enough in hand (or none are up yet)
            del self._changed[address]
            self._keys[address] = keys
            if time.monotonic() - now > _LOOK_BUDGET:
                return 0.0  # the rest after a turn of the loop
        return _LOOK_EVERY

    def _compose(self, address: str) -> list[Hashable] | None:
        """The recipient's messages as the delivery round will ask for them, started in the
        compose workers; None when one could not be started."""
        starts, by_ip = self._starts, self._by_ip
        rows = sorted(
            row
            for ip_id in self._addresses[address]
            for row in by_ip[starts[ip_id] : starts[ip_id + 1]]
        )
        if not rows:
            return []
        contact = self._contact(rows[0], address)
        keys: list[Hashable] = []
        built: list[Finding] = []
        for begin in range(0, len(rows), self._limit):
            chunk = rows[begin : begin + self._limit]
            findings = [self._rows.finding(row) for row in chunk]
            built += findings
            routes = [self._route_of(self._rows.row_ip[row]) for row in chunk]
            networks = {route.network for route in routes if route is not None}
            network: Network | None = networks.pop() if len(networks) == 1 else None
            key = self._notifier.sending.ahead(contact, findings, network, self._options)
            if key is None:
                self._notifier.drop_ahead(keys)
                return None
            keys.append(key)
        if self._kept + len(built) <= _KEEP_MOST:
            self._built[address] = (array("I", rows), built)
            self._kept += len(built)
        return keys

    def _contact(self, row: int, address: str) -> Contact:
        # the round takes a recipient's contact from the route of its first finding
        route = self._route_of(self._rows.row_ip[row])
        assert route is not None
        return next(c for c in route.recipients if c.address == address)
