"""How fast a registry (or any server named by a key) is asked: turns spaced evenly at the
configured rate, and no turn while the server asked us to wait (HTTP 429, Retry-After)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ["Pacer", "RateLimiter"]


@runtime_checkable
class Pacer(Protocol):
    """Turns shared with other processes (the lookup cache's store); ``None``: unavailable."""

    def reserve(self, key: str, interval: float, hold: float = 0.0) -> float | None: ...


class RateLimiter:
    """Requests per second per key (a registry host), spaced evenly; ``pause`` honours 429s.

    With ``shared``, the turns are taken in the store every process of a team shares, so
    several workers together keep to the rate; when the store cannot answer, this process
    paces itself alone.
    """

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        shared: Pacer | None = None,
    ):
        self._interval = 1.0 / rate
        self._clock = clock
        self._shared = shared
        self._next: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def wait(self, key: str) -> None:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            now = self._clock()
            start = max(now, self._next.get(key, now))
            if self._shared is not None:
                # the team's next turn, no sooner than this process's own
                turn = self._shared.reserve(f"rate:{key}", self._interval, start - now)
                if turn is not None:
                    start = max(start, now + turn)
            self._next[key] = start + self._interval
            if start > now:
                await asyncio.sleep(start - now)
                # a busy event loop wakes us late: the next request keeps its distance from
                # when this one really leaves, or several would leave together and exhaust the
                # server's burst (nine tenths of an interval: a late start is caught up slowly;
                # keeping to the even schedule instead, half an interval apart at least, made
                # a batch 5% faster but drew an answer of 429 in one run of five; three quarters
                # drew five in one 30,000-address run of two)
                self._next[key] = max(self._next[key], self._clock() + self._interval * 0.9)

    def pause(self, key: str, seconds: float) -> None:
        """The server asked us to wait (429 Retry-After): nobody queries it before then."""
        until = self._clock() + seconds
        self._next[key] = max(self._next.get(key, 0.0), until)
        if self._shared is not None:
            self._shared.reserve(f"rate:{key}", 0.0, seconds)
