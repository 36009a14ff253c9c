"""Spare TLS connections, opened ahead to a server a batch is about to ask many times.

A registry's answer takes longer than the interval between two of its turns (at 20 requests a
second the interval is 50 ms; an answer from another continent 100 to 300 ms), so several of
its requests are in flight at once, each on a connection of its own. Opened on demand, each of
those connections would cost its request a TCP and a TLS handshake (two round trips, and on a
busy event loop more) after its turn came: the first requests of every registry would leave
late, and a late request is a turn lost. ``Spares`` opens a few connections ahead, TLS and all,
and hands them to the connections httpcore makes (``take``, from the network backend's
``connect_tcp``): httpcore's ``start_tls`` then finds the handshake done.

A spare is used only for the origin it was opened for, with the same TLS context and server
name; one that waited longer than ``KEEP_SECONDS`` or that the server closed meanwhile is
dropped, and the connection is made afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpcore

__all__ = ["KEEP_SECONDS", "Spares"]

KEEP_SECONDS = 10.0  # a spare unused this long is closed: servers close idle ones after 5-75 s
MAX_SPARES = 4  # spares kept per origin at most
_DRAIN_SECONDS = 0.002  # a spare's read of what came after its handshake waits this long more

Connect = Callable[[str, int], Awaitable[httpcore.AsyncNetworkStream]]


@dataclass(slots=True)
class _Spare:
    stream: httpcore.AsyncNetworkStream  # TLS already up
    context: ssl.SSLContext
    server_name: str
    opened: float


class Spares:
    """Spare connections per (host, port), opened through ``connect`` (the backend's own,
    address policy and all)."""

    def __init__(self, connect: Connect, clock: Callable[[], float] = time.monotonic) -> None:
        self._connect = connect
        self._clock = clock
        self._kept: dict[tuple[str, int], list[_Spare]] = {}
        self._opening: set[asyncio.Task[None]] = set()
        self.opened = 0  # spares that were made
        self.used = 0  # spares httpcore took

    def open(
        self,
        host: str,
        port: int,
        context: ssl.SSLContext,
        count: int,
        timeout: float,
        after: asyncio.Event | None = None,
    ) -> None:
        """Open ``count`` spares to ``host:port`` in the background, once ``after`` is set
        (failures are left for the requests' own connections to meet)."""
        room = MAX_SPARES - len(self._kept.get((host, port), ()))
        for _ in range(min(count, room)):
            opening = self._open(host, port, context, timeout, after)
            task = asyncio.get_running_loop().create_task(opening)
            self._opening.add(task)
            task.add_done_callback(self._opening.discard)

    async def _open(
        self,
        host: str,
        port: int,
        context: ssl.SSLContext,
        limit: float,
        after: asyncio.Event | None,
    ) -> None:
        if after is not None:
            await after.wait()
        try:
            async with asyncio.timeout(limit):
                plain = await self._connect(host, port)
                # as httpcore sets it for every HTTP/1.1 connection it makes with this context
                context.set_alpn_protocols(["http/1.1"])
                stream = await plain.start_tls(context, server_hostname=host, timeout=limit)
                # the session tickets a TLS 1.3 server sends after the handshake read now, not
                # by the request that takes the spare (a wait of a few ms at its turn)
                await asyncio.sleep(_DRAIN_SECONDS)
                if not await _idle(stream):
                    await _quietly_close(stream)
                    return
        except Exception:  # noqa: BLE001 - a spare that cannot be made is simply not there
            return
        self.opened += 1
        self._kept.setdefault((host, port), []).append(_Spare(stream, context, host, self._clock()))

    async def take(self, host: str, port: int) -> httpcore.AsyncNetworkStream | None:
        """A spare to ``host:port`` for a connection httpcore is making, or None."""
        kept = self._kept.get((host, port))
        while kept:
            spare = kept.pop()
            if self._clock() - spare.opened > KEEP_SECONDS or not await _idle(spare.stream):
                self._close_later(spare.stream)
                continue
            self.used += 1
            return _Taken(spare, host, port, self._connect)
        return None

    def _close_later(self, stream: httpcore.AsyncNetworkStream) -> None:
        task = asyncio.get_running_loop().create_task(_quietly_close(stream))
        self._opening.add(task)
        task.add_done_callback(self._opening.discard)

    async def aclose(self) -> None:
        for task in list(self._opening):
            task.cancel()
        await asyncio.gather(*self._opening, return_exceptions=True)
        kept, self._kept = self._kept, {}
        for spares in kept.values():
            for spare in spares:
                await _quietly_close(spare.stream)


async def _idle(stream: httpcore.AsyncNetworkStream) -> bool:
    """Whether a spare is still open with nothing unread. A TLS 1.3 server sends its session
    tickets after the handshake, which leaves the socket readable: those are read (the TLS
    layer keeps them) by a read that then waits a moment for data that should not come; data
    or the end of the stream instead means the spare is no use."""
    if not stream.get_extra_info("is_readable"):
        return True
    try:
        await stream.read(1, timeout=_DRAIN_SECONDS)
    except httpcore.ReadTimeout:
        return True  # what was there were the tickets
    except (httpcore.ReadError, OSError):
        return False
    return False  # data, or the end of the stream


async def _quietly_close(stream: httpcore.AsyncNetworkStream) -> None:
    with contextlib.suppress(Exception):
        await stream.aclose()


class _Taken(httpcore.AsyncNetworkStream):
    """A spare as ``connect_tcp`` returns it: ``start_tls`` gives the stream whose handshake
    is done, when asked with the spare's context and server name; asked otherwise (or used
    without TLS), the spare is closed and a connection made as asked."""

    def __init__(self, spare: _Spare, host: str, port: int, connect: Connect) -> None:
        self._spare = spare
        self._origin = (host, port)
        self._connect = connect
        self._plain: httpcore.AsyncNetworkStream | None = None

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's stream interface
    ) -> httpcore.AsyncNetworkStream:
        spare = self._spare
        if ssl_context is spare.context and server_hostname == spare.server_name:
            return spare.stream
        plain = await self._fresh()
        return await plain.start_tls(ssl_context, server_hostname=server_hostname, timeout=timeout)

    async def _fresh(self) -> httpcore.AsyncNetworkStream:
        if self._plain is None:
            await _quietly_close(self._spare.stream)
            self._plain = await self._connect(*self._origin)
        return self._plain

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await (await self._fresh()).read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await (await self._fresh()).write(buffer, timeout)

    async def aclose(self) -> None:
        await _quietly_close(self._plain if self._plain is not None else self._spare.stream)

    def get_extra_info(self, info: str) -> Any:
        stream = self._plain if self._plain is not None else self._spare.stream
        return stream.get_extra_info(info)
