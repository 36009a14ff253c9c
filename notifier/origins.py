"""HTTP connections kept per origin: a small httpcore pool for each (scheme, host, port).

httpcore's one pool for every host walks all of its connections, and for each idle one all of
them again, whenever a request comes or goes; and it closes idle connections whenever the pool
holds more than its keep-alive bound, whichever host they belong to. A batch touches a handful of
registries many times and a hundred other hosts (security.txt, WKD, domain RDAP) once each: in
one shared pool the registries' connections were closed by the others' and every request paid a
walk over dozens of connections. Here each origin has a pool of its own (a walk over at most
``per_host`` connections), and the origins kept are bounded: past ``limit`` open connections or
origins, the least recently used origin with nothing in flight is closed, so a registry asked
every few milliseconds keeps its connections while hosts asked once make room for each other.

Bounds: at most ``per_host`` connections (and requests in flight) to one origin, at most
``limit`` requests in flight in all, and, once requests finish, at most ``limit`` connections
and ``limit`` origins kept open. A request waits for its origin's turn first, then for one of the
``limit`` turns, within the pool timeout (``httpx.Timeout``'s ``pool``).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

import httpcore

__all__ = ["OriginPools"]

_Key = tuple[bytes, bytes, int]


class _Origin:
    """One origin's pool, its turns, and how busy it is (waiting or in flight)."""

    __slots__ = ("pool", "turns", "busy", "used")

    def __init__(self, pool: httpcore.AsyncConnectionPool, per_host: int, now: float) -> None:
        self.pool = pool
        self.turns = asyncio.Semaphore(per_host)
        self.busy = 0
        self.used = now


class OriginPools:
    """A bounded set of per-origin connection pools, driven as httpx drives httpcore's pool:
    ``handle_async_request``, ``aclose`` and the async context manager."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext,
        network_backend: httpcore.AsyncNetworkBackend,
        limit: int,
        per_host: int,
        keepalive_expiry: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ssl_context = ssl_context
        self._backend = network_backend
        self._limit = limit
        self._per_host = min(per_host, limit)
        self._expiry = keepalive_expiry
        self._clock = clock
        self._turns = asyncio.Semaphore(limit)
        self._origins: OrderedDict[_Key, _Origin] = OrderedDict()  # least recently used first
        self._closed = False

    # -- what the bounds can be checked against ---------------------------------------------

    @property
    def origins(self) -> list[str]:
        """The origins with a pool, least recently used first."""
        return [f"{s.decode()}://{h.decode()}:{p}" for s, h, p in self._origins]

    @property
    def open_connections(self) -> int:
        return sum(len(origin.pool.connections) for origin in self._origins.values())

    # -- requests ---------------------------------------------------------------------------

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        if self._closed:
            raise httpcore.ConnectError("the HTTP client is closed")
        url = request.url.origin
        key = (url.scheme, url.host, url.port)
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = _Origin(self._pool(), self._per_host, self._clock())
        self._origins.move_to_end(key)
        origin.busy += 1
        held = 0
        try:
            if origin.turns.locked() or self._turns.locked():
                timeout = request.extensions.get("timeout", {}).get("pool")
                try:
                    async with asyncio.timeout(timeout):
                        await origin.turns.acquire()
                        held = 1
                        await self._turns.acquire()
                        held = 2
                except TimeoutError:
                    raise httpcore.PoolTimeout(
                        f"no connection to {url} free within {timeout:g} s"
                    ) from None
            else:
                # both free: taken without waiting, and without a timer
                await origin.turns.acquire()
                await self._turns.acquire()
                held = 2
            response = await origin.pool.handle_async_request(request)
        except BaseException:
            self._release(origin, held)
            await self._trim()
            raise
        stream = response.stream
        assert hasattr(stream, "__aiter__")
        return httpcore.Response(
            status=response.status,
            headers=response.headers,
            content=_Stream(stream, self._finish, origin),
            extensions=response.extensions,
        )

    def _pool(self) -> httpcore.AsyncConnectionPool:
        return httpcore.AsyncConnectionPool(
            ssl_context=self._ssl_context,
            max_connections=self._per_host,
            max_keepalive_connections=self._per_host,
            keepalive_expiry=self._expiry,
            network_backend=self._backend,
        )

    def _release(self, origin: _Origin, held: int) -> None:
        origin.busy -= 1
        origin.used = self._clock()
        if held >= 1:
            origin.turns.release()
        if held >= 2:
            self._turns.release()

    async def _finish(self, origin: _Origin) -> None:
        self._release(origin, 2)
        await self._trim()

    async def _trim(self) -> None:
        """Close the least recently used idle origins while over a bound or past keep-alive."""
        closing: list[httpcore.AsyncConnectionPool] = []
        now = self._clock()
        connections = self.open_connections
        while True:
            idle = next(((k, o) for k, o in self._origins.items() if not o.busy), None)
            if idle is None:
                break
            key, origin = idle
            over = len(self._origins) > self._limit or connections > self._limit
            if not over and now - origin.used < self._expiry:
                break
            del self._origins[key]
            connections -= len(origin.pool.connections)
            closing.append(origin.pool)
        for pool in closing:
            await pool.aclose()

    # -- lifetime ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        self._closed = True
        origins = list(self._origins.values())
        self._origins.clear()
        for origin in origins:
            await origin.pool.aclose()

    async def __aenter__(self) -> OriginPools:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()


class _Stream:
    """A response body that gives its origin's turns back once, when closed."""

    def __init__(self, stream: Any, finish: Callable[[_Origin], Any], origin: _Origin) -> None:
        self._stream = stream
        self._finish = finish
        self._origin: _Origin | None = origin

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            if hasattr(self._stream, "aclose"):
                await self._stream.aclose()
        finally:
            origin, self._origin = self._origin, None
            if origin is not None:
                await self._finish(origin)
