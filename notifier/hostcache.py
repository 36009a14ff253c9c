"""The addresses of the hosts a run connects to, asked once and kept a minute, and asked ahead
where a connection is sure to follow (``GuardedClient.look_up``).

A registry's second connection (two requests in flight) or a new one after an idle close would
otherwise wait for a DNS round trip first, tens of milliseconds on the internet, while its turn
at the registry's rate goes by. Lookups of one name made at once share one query. The address
policy is checked on every connection all the same: only the question is saved.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from .models import IPAddress

__all__ = ["GuardedClient", "HostAddresses"]

KEEP_SECONDS = 60.0  # far below the TTLs registries give their names (minutes to days)
MAX_HOSTS = 1024  # security.txt fetches name many hosts once each: the oldest go first


class HostAddresses:
    """``await hosts.get(name)``: its addresses, from ``resolve`` at most once a minute."""

    def __init__(
        self,
        resolve: Callable[[str], Awaitable[list[IPAddress]]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolve = resolve
        self._clock = clock
        self._known: OrderedDict[str, tuple[float, list[IPAddress]]] = OrderedDict()
        self._asking: dict[str, asyncio.Future[list[IPAddress]]] = {}

    async def get(self, host: str) -> list[IPAddress]:
        name = host.lower()
        known = self._known.get(name)
        if known is not None and known[0] > self._clock():
            self._known.move_to_end(name)
            return list(known[1])
        asking = self._asking.get(name)
        if asking is None:
            asking = asyncio.ensure_future(self._resolve(host))
            self._asking[name] = asking
            asking.add_done_callback(lambda done: self._answered(name, done))
        # shielded: one caller giving up (its deadline) does not cancel the others' answer
        return list(await asyncio.shield(asking))

    def _answered(self, name: str, done: asyncio.Future[list[IPAddress]]) -> None:
        self._asking.pop(name, None)
        if done.cancelled() or done.exception() is not None or not done.result():
            return  # failures and empty answers are asked again next time
        self._known[name] = (self._clock() + KEEP_SECONDS, done.result())
        self._known.move_to_end(name)
        while len(self._known) > MAX_HOSTS:
            self._known.popitem(last=False)


class GuardedClient(httpx.AsyncClient):
    """The client ``make_http_client`` makes: its hosts' addresses can be asked ahead."""

    def __init__(self, hosts: HostAddresses, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hosts = hosts

    async def look_up(self, url: str) -> None:
        """Resolve ``url``'s host now, so that its connection finds the answer (a failure is
        left for the connection to meet)."""
        host = httpx.URL(url).host
        with contextlib.suppress(Exception):
            await self.hosts.get(host)
