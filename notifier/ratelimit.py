"""How fast a registry (or any server named by a key) is asked: turns spaced evenly at the
configured rate, and no turn while the server asked us to wait (HTTP 429, Retry-After).

A turn is when a request may start, not when its bytes reach the wire: between the two lie the
connection pool's and the TLS layer's turns of a busy event loop, tens of milliseconds at
times, so two requests given turns an interval apart could reach the server together. A caller
that can tell when its request is about to leave (``Turn.leaving``, awaited right before its
first bytes are written) and when it has (``Turn.sent``) gets its request held at the wire by a
token bucket one and a quarter requests deep, filled at the rate: a request written late lets
the next follow three quarters of an interval after it, so lateness is caught up instead of
adding up, and no stretch of time sees more than a quarter of a request over the rate (servers'
buckets hold a second's worth or more; a depth of one and a half drew two answers of 429 in some
thirty runs, from a loaded server reading requests late and together). The next turn waits
until the request has left. Turns come early by the usual delay between a turn and its request
leaving (the median of the last eight), so that requests leave on the even schedule, not that
much later; a turn given late (its predecessor left late) lets the next one come a quarter of
an interval sooner, by the rule the processes of a team share (``shared_turn``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

__all__ = ["Pacer", "RateLimiter", "Turn", "shared_turn"]

_LATE_GAP = 0.9  # intervals between a turn woken late and the next one, unconfirmed
_DEPTH = 1.25  # requests the bucket at the wire holds: the most a late one is caught up by
_MIN_GAP = 0.75  # intervals between two requests written to one server, at least
_LEAVE_WAIT = 2.0  # intervals the next turn waits at most for the last request to leave
_LEADS = 8  # delays between a turn and its request leaving remembered per server
_MAX_LEAD = 0.5  # intervals a turn comes early at most


class Turn:
    """One turn at a server; ``sent`` once its request has left (again: no effect)."""

    def __init__(self, limiter: RateLimiter | None = None, key: str = "") -> None:
        self._limiter = limiter
        self._key = key
        self._given = limiter._clock() if limiter is not None else time.monotonic()
        self.left = asyncio.Event()

    async def leaving(self) -> None:
        """Until this request may be written: nine tenths of an interval after the last."""
        if self._limiter is not None and not self.left.is_set():
            await self._limiter._hold(self._key)

    def tracer(self, own: Callable[[], bool]) -> Callable[[str, object], Awaitable[None]]:
        """httpcore's trace hook for this turn's request (``own()``: the request traced now is
        this turn's): held before its head is written, told once it has been."""

        async def trace(event: str, info: object) -> None:
            if not own():
                return
            if event.endswith(".send_request_headers.started"):
                await self.leaving()
            elif event.endswith(".send_request_headers.complete"):
                self.sent()

        return trace

    def sent(self) -> None:
        if self.left.is_set():
            return
        self.left.set()
        if self._limiter is not None:
            self._limiter._left(self._key, self._limiter._clock() - self._given)


def shared_turn(
    due: float | None, now: float, interval: float, hold: float = 0.0
) -> tuple[float, float]:
    """A turn on the schedule several processes share (the lookup cache's store keeps ``due``,
    the moment of the next turn): ``(when it starts, when the one after it is due)``.

    None starts before ``now + hold`` (a 429's Retry-After comes as ``hold`` with ``interval``
    0). A turn asked after its moment (a busy process) starts at once, and the next is due up
    to a quarter of an interval sooner than a whole one later: what was lost is caught up by a
    quarter of a request at most, as at the wire.
    """
    due = now if due is None else due
    start = max(now + hold, due)
    if not interval:
        return start, start
    return start, start + interval - min(start - due, interval * (_DEPTH - 1.0))


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
        self._leaving: dict[str, Turn] = {}  # a turn whose request has not said it left
        self._leads: dict[str, deque[float]] = {}  # per server: turn-to-leaving delays
        self._written: dict[str, float] = {}  # per server: when the last request was written
        self._tokens: dict[str, tuple[float, float]] = {}  # per server: the wire's bucket, when

    async def wait(self, key: str, *, confirm: bool = False) -> Turn:
        """Until the next turn at ``key``. With ``confirm``, the caller calls ``sent`` on the
        turn once its request has left (or has failed to): the next turn waits for that (at
        most two intervals) and comes at least three quarters of an interval after it."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            leaving = self._leaving.pop(key, None)
            if leaving is not None and not leaving.left.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._interval * _LEAVE_WAIT):
                        await leaving.left.wait()
            # the request leaves about ``lead`` after its turn: the turn comes that much early
            lead = self._lead(key) if confirm else 0.0
            now = self._clock()
            # a turn given late (its request left late) lets the next come a little sooner
            due = self._next.get(key)
            start, following = shared_turn(None if due is None else due - lead, now, self._interval)
            if self._shared is not None:
                # the team's next turn, no sooner than this process's own
                reserved = self._shared.reserve(f"rate:{key}", self._interval, start - now)
                if reserved is not None and now + reserved > start:
                    start = now + reserved
                    following = start + self._interval
            self._next[key] = following + lead
            if start > now:
                await asyncio.sleep(start - now)
                if not confirm:
                    # woken late by a busy loop and with no bucket at the wire: the next turn
                    # keeps nine tenths of an interval from this one (a confirmed turn's
                    # schedule stays, and its request is caught up at the wire)
                    self._next[key] = max(
                        self._next[key], self._clock() + self._interval * _LATE_GAP
                    )
            turn = Turn(self, key)
            if confirm:
                self._leaving[key] = turn
            return turn

    def _lead(self, key: str) -> float:
        leads = self._leads.get(key)
        if not leads or len(leads) < 3:
            return 0.0
        return min(sorted(leads)[len(leads) // 2], self._interval * _MAX_LEAD)

    async def _hold(self, key: str) -> None:
        # another request may take the moment while this one sleeps: look again after
        while (wait := self._wire_wait(key)) > 0:  # noqa: ASYNC110
            await asyncio.sleep(wait)
        # checked and taken with no turn of the loop between
        now = self._clock()
        tokens, _ = self._bucket(key, now)
        self._tokens[key] = (tokens - 1.0, now)
        self._written[key] = now

    def _bucket(self, key: str, now: float) -> tuple[float, float]:
        """The wire's tokens for ``key`` now, and the seconds until the next request may go."""
        tokens, at = self._tokens.get(key, (_DEPTH, now))
        tokens = min(_DEPTH, tokens + (now - at) / self._interval)
        gap = self._written.get(key, -self._interval) + self._interval * _MIN_GAP - now
        return tokens, max(gap, (1.0 - tokens) * self._interval)

    def _wire_wait(self, key: str) -> float:
        return self._bucket(key, self._clock())[1]

    def _left(self, key: str, lead: float) -> None:
        """A request of ``key`` left ``lead`` seconds after its turn: the next one leaves at
        least three quarters of an interval after it."""
        self._leads.setdefault(key, deque(maxlen=_LEADS)).append(lead)
        self._next[key] = max(self._next.get(key, 0.0), self._clock() + self._interval * _MIN_GAP)

    def pause(self, key: str, seconds: float) -> None:
        """The server asked us to wait (429 Retry-After): nobody queries it before then."""
        until = self._clock() + seconds
        self._next[key] = max(self._next.get(key, 0.0), until)
        if self._shared is not None:
            self._shared.reserve(f"rate:{key}", 0.0, seconds)
