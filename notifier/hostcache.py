"""The addresses of the hosts a run connects to: asked of the configured resolver (c-ares in a
batch, ``resolve_host``), once, kept a minute, and asked ahead where a connection is sure to
follow (``GuardedClient.look_up``).

A registry's second connection (two requests in flight) or a new one after an idle close would
otherwise wait for a DNS round trip first, tens of milliseconds on the internet, while its turn
at the registry's rate goes by. Lookups of one name made at once share one query. The address
policy is checked on every connection all the same: only the question is saved.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import ipaddress
import sys
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import dns.asyncresolver
import dns.exception
import httpx

from .errors import SourceTimeout
from .models import IPAddress

if TYPE_CHECKING:
    import ssl

    from .sources.ares import BulkResolver
    from .spares import Spares

__all__ = ["GuardedClient", "HostAddresses", "resolve_host"]

KEEP_SECONDS = 60.0  # far below the TTLs registries give their names (minutes to days)
MAX_HOSTS = 1024  # security.txt fetches name many hosts once each: the oldest go first


async def resolve_host(
    resolver: dns.asyncresolver.Resolver, host: str, bulk: BulkResolver | None = None
) -> list[IPAddress]:
    """Addresses of ``host`` (A then AAAA) through ``bulk`` (c-ares) when given, else through
    ``resolver``; an IP literal is itself."""
    literal = host.strip("[]")
    try:
        return [ipaddress.ip_address(literal)]
    except ValueError:
        pass
    found: list[IPAddress] = []
    timed_out = False
    # both asked at once: a name's lookup costs one round trip, not two
    answers: list[Iterable[str] | BaseException]
    if bulk is not None:
        answers = [
            a if isinstance(a, BaseException) else a.values
            for a in await asyncio.gather(
                bulk.query(host, "A"), bulk.query(host, "AAAA"), return_exceptions=True
            )
        ]
    else:
        answers = [
            a if isinstance(a, BaseException) else (r.to_text() for r in a)
            for a in await asyncio.gather(
                resolver.resolve(host, "A", search=False),
                resolver.resolve(host, "AAAA", search=False),
                return_exceptions=True,
            )
        ]
    for answer in answers:
        if isinstance(answer, dns.exception.Timeout):
            timed_out = True
        elif isinstance(answer, BaseException):
            if not isinstance(answer, dns.exception.DNSException):
                raise answer
        else:
            found.extend(ipaddress.ip_address(text) for text in answer)
    if not found and timed_out:
        raise SourceTimeout(
            f"DNS lookup of {host} timed out after the {resolver.lifetime:g} s limit "
            "([dns] timeout)",
            source="dns",
        )
    return found


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
    """The client ``make_http_client`` makes: its hosts' addresses can be asked ahead, and
    connections to a server it will ask many times opened ahead (``spare``)."""

    def __init__(
        self, hosts: HostAddresses, spares: Spares, context: ssl.SSLContext, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.hosts = hosts
        self.spares = spares
        self._context = context

    def spare(self, url: str, count: int, after: asyncio.Event | None = None) -> None:
        """Open ``count`` connections to ``url``'s server ahead, TLS and all (``Spares``), once
        ``after`` is set."""
        parsed = httpx.URL(url)
        if parsed.scheme == "https" and parsed.host:
            port = parsed.port or 443
            limit = self.timeout.connect or 5.0
            self.spares.open(parsed.host, port, self._context, count, limit, after)

    async def look_up(self, url: str) -> None:
        """Resolve ``url``'s host now, so that its connection finds the answer (a failure is
        left for the connection to meet); the first time, the connection's own modules are
        imported meanwhile (anyio's, which httpcore imports at its first connection: 20 ms
        that would follow the answer)."""
        host = httpx.URL(url).host
        ready = all(name in sys.modules for name in _BACKEND)
        warming = [] if ready else [asyncio.to_thread(_import_backend)]
        with contextlib.suppress(Exception):
            await asyncio.gather(self.hosts.get(host), *warming)


_BACKEND = ("anyio._backends._asyncio", "anyio.streams.tls")


def _import_backend() -> None:
    for name in _BACKEND:
        importlib.import_module(name)
