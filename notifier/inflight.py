"""One lookup of a key in flight: in this process, and across the processes sharing a cache.

Concurrent callers with the same key (a network, a host name, a domain) wait for the first one's
answer rather than asking again: in this process behind a lock per key, which is forgotten when
nobody holds or awaits it; across processes through the cache's in-flight marks (``claim``),
polled, since the holder is another process that no in-process event can hear from.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .sources import LookupContext

__all__ = ["gate"]


@dataclass(slots=True)
class _Gate:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class gate:  # noqa: N801 - used as ``async with gate(...)``, like a function
    """Hold the lock named ``key`` (and, when ``shared``, the mark other processes see); it is
    forgotten when nobody holds or awaits it. A class, not a generator: it is entered a few
    times per address of a batch."""

    __slots__ = ("_ctx", "_key", "_shared", "_gate")

    def __init__(self, ctx: LookupContext, key: str, *, shared: bool = True) -> None:
        self._ctx = ctx
        self._key = key
        self._shared = shared and getattr(ctx.cache, "claim", None) is not None

    async def __aenter__(self) -> None:
        inflight = self._ctx.inflight
        held = inflight.get(self._key)
        if not isinstance(held, _Gate):
            held = inflight[self._key] = _Gate()
        self._gate = held
        held.users += 1
        try:
            await held.lock.acquire()
        except BaseException:
            self._leave()
            raise
        if self._shared:
            try:
                await _claim(self._ctx, self._key)
            except BaseException:
                held.lock.release()
                self._leave()
                raise

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            if self._shared:
                self._ctx.cache.release(self._key)  # type: ignore[union-attr]
        finally:
            self._gate.lock.release()
            self._leave()

    def _leave(self) -> None:
        gate = self._gate
        gate.users -= 1
        if not gate.users and self._ctx.inflight.get(self._key) is gate:
            del self._ctx.inflight[self._key]


_SHARED_LEASE = 60.0  # seconds another process may hold a key before it counts as gone
_SHARED_POLL = 0.05


async def _claim(ctx: LookupContext, key: str) -> None:
    """Across processes sharing the cache: while another holds ``key`` (is fetching it), wait,
    then find its answer in the cache instead of asking the server again."""
    claim = ctx.cache.claim  # type: ignore[union-attr]
    # polled: the holder is another process, which no in-process event can hear from
    for _ in range(int(_SHARED_LEASE / _SHARED_POLL)):
        if claim(key, _SHARED_LEASE):
            return
        await asyncio.sleep(_SHARED_POLL)
