"""Work units: several ``notify batch`` processes on one input (one machine with the file
store, or many with ``[state] url``) share its lookups and its messages instead of racing.

Lookups are shared by address block (a /24, v6 /48): the first process to see a block takes it
and looks up its addresses, filling the shared cache; the others leave those addresses until
their own lookups are done and the taker has let the block go, then resolve them from the cache
(a block whose taker died is taken and looked up afresh).

Messages are shared by unit: one recipient's message in one round of the ladder, named by the
round, the address and a digest of the findings it carries, so every process reading the same
input names it alike. A process takes a unit with a mark in the shared cache
(``LookupCache.claim``): while its holder lives, others leave it alone and go on with the next.
Once every unit of a round was tried, a process comes back to those another held, takes each
when its mark is gone and "delivers" it as usual: the ledger then says what the holder sent
(already sent: nothing goes out again), so every process reports every finding and climbs the
ladder alike. A holder killed mid-unit loses its mark at once (its process is gone; on another
machine, its database session), a hung one when the lease ends; the next taker sends what the
ledger says was not sent, and whatever the killed one may have sent stays in doubt.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol, TypeVar

from ..models import IPAddress

__all__ = ["Blocks", "SharedUnits", "each", "unit_name"]

LEASE = 600.0  # seconds a hung holder keeps a unit (a message's retries fit well inside)
POLL = 0.2  # seconds between looks at a unit another process is sending


class _Shared(Protocol):
    def claim(self, key: str, lease: float) -> bool: ...

    def release(self, key: str) -> None: ...

    def release_many(self, keys: Iterable[str]) -> None: ...


_T = TypeVar("_T")


_BLOCK = {4: 24, 6: 48}  # addresses looked up together: a registry's smallest networks


def _block_of(ip: IPAddress) -> tuple[int, int]:
    shift = ip.max_prefixlen - _BLOCK[ip.version]
    return ip.version, int(ip) >> shift


def _block_unit(block: tuple[int, int]) -> str:
    version, number = block
    return f"lookups:{version}:{number:x}/{_BLOCK[version]}"


def unit_name(rung: int, address: str, finding_keys: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for key in finding_keys:
        digest.update(key.encode("utf-8", "surrogatepass") + b"\n")
    return f"unit:{rung}:{address.lower()}:{digest.hexdigest()[:32]}"


class SharedUnits:
    """The units of one batch, over the cache every process of the run shares."""

    def __init__(self, shared: _Shared) -> None:
        self._shared = shared

    def take(self, unit: str) -> bool:
        return self._shared.claim(unit, LEASE)

    def give_back(self, unit: str) -> None:
        self._shared.release(unit)

    def give_back_all(self, units: Iterable[str]) -> None:
        self._shared.release_many(units)

    async def wait_for(self, units: list[str]) -> None:
        """Until no live process holds any of ``units`` (each taken and let go at once)."""
        for unit in units:
            while True:  # the holder is another process: nothing here can wake us
                if self.take(unit):
                    break
                await asyncio.sleep(POLL)
            self.give_back(unit)

    async def round(
        self,
        addresses: list[str],
        name: Callable[[str], str],
        deliver: Callable[[str, bool], Awaitable[None]],
        *,
        width: int,
    ) -> None:
        """``deliver(address, first)`` for every unit (``name(address)``) this process takes:
        first those nobody holds, in the order given, then, as their holders let go, the
        others."""
        later: list[tuple[str, str]] = []

        async def first(address: str) -> None:
            unit = name(address)
            if not self.take(unit):
                later.append((address, unit))
                return
            try:
                await deliver(address, True)
            finally:
                self.give_back(unit)

        async def second(held: tuple[str, str]) -> None:
            address, unit = held
            while True:  # the holder is another process: nothing here can wake us
                if self.take(unit):
                    break
                await asyncio.sleep(POLL)
            try:
                await deliver(address, False)
            finally:
                self.give_back(unit)

        await each(addresses, first, width)
        await each(sorted(later), second, width)


class Blocks:
    """Which address blocks this process looks up, and the addresses of the blocks another
    process took, set aside until it lets them go."""

    def __init__(self, units: SharedUnits) -> None:
        self._units = units
        self._taken: dict[tuple[int, int], bool] = {}
        self._theirs: dict[tuple[int, int], list[int]] = {}

    def mine(self, ip: IPAddress, ip_id: int) -> bool:
        """Whether this process looks ``ip`` up now (otherwise it is set aside)."""
        block = _block_of(ip)
        mine = self._taken.get(block)
        if mine is None:
            mine = self._taken[block] = self._units.take(_block_unit(block))
        if not mine:
            self._theirs.setdefault(block, []).append(ip_id)
        return mine

    async def theirs(self) -> list[int]:
        """Once this process's own lookups are done: let its blocks go, then the addresses set
        aside, as each block is let go by the process that took it (or that process dies)."""
        self._units.give_back_all(_block_unit(b) for b, mine in self._taken.items() if mine)
        await self._units.wait_for([_block_unit(block) for block in self._theirs])
        later = [ip_id for ids in self._theirs.values() for ip_id in ids]
        self._taken, self._theirs = {}, {}
        return later


async def each(items: list[_T], work: Callable[[_T], Awaitable[None]], width: int) -> None:
    """``work`` on every item, ``width`` at a time; the first failure cancels the rest."""
    pending = iter(items)

    async def worker() -> None:
        for item in pending:
            await work(item)

    tasks = [asyncio.create_task(worker()) for _ in range(min(width, len(items)))]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
