"""Network access with limits: the one place notifier opens connections for lookups.

Every fetch here has a byte cap and a total deadline (a server dripping a byte a second cannot
hold a run past its timeout), every host name is resolved through the configured nameservers,
and every address actually connected to is checked against the address policy (no SSRF), after
each DNS answer and each redirect.
"""

from __future__ import annotations

import asyncio
import ssl
import typing
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urljoin

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver
import httpcore
import httpx

from .config import DNSSettings, HTTPSettings
from .errors import SourceProtocolError, SourceTimeout, SourceUnavailable
from .hostcache import GuardedClient, HostAddresses, resolve_host
from .models import IPAddress
from .origins import OriginPools
from .public import is_public_address
from .ratelimit import Pacer, RateLimiter, Turn
from .spares import Spares
from .tls import ClientTLS

if typing.TYPE_CHECKING:
    from .sources.ares import BulkResolver

__all__ = [
    "is_public_address",
    "AddressPolicy",
    "make_resolver",
    "resolve_host",
    "make_http_client",
    "FetchResult",
    "fetch",
    "UntrustedCertificate",
    "tcp_exchange",
    "Pacer",
    "RateLimiter",
    "Turn",
]


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which addresses notifier may connect to for lookups."""

    allow_private: bool = False

    def allows(self, addr: IPAddress) -> bool:
        return self.allow_private or is_public_address(addr)


def make_resolver(settings: DNSSettings) -> dns.asyncresolver.Resolver:
    """A resolver on the configured nameservers (``host:port``), or the system's."""
    if settings.nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(host, port) for host, port in settings.endpoints()
        ]
    else:
        resolver = dns.asyncresolver.Resolver()
    resolver.timeout = settings.timeout
    resolver.lifetime = settings.timeout
    resolver.cache = dns.resolver.LRUCache(10_000)
    return resolver


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves through our resolver and connects only to addresses the policy allows."""

    def __init__(
        self,
        resolver: dns.asyncresolver.Resolver,
        policy: AddressPolicy,
        bulk_dns: Callable[[], BulkResolver | None] | None = None,
        *,
        trusted: Callable[[], Awaitable[None]] | None = None,
    ):
        """``trusted``: until the TLS context's trust store is in (``ClientTLS.ready``)."""
        self._resolver = resolver
        self._bulk_dns = bulk_dns
        self._trusted = trusted
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()
        self.hosts = HostAddresses(self._lookup)
        self.spares = Spares(self._connect)

    async def _lookup(self, host: str) -> list[IPAddress]:
        bulk = self._bulk_dns() if self._bulk_dns is not None else None
        return await resolve_host(self._resolver, host, bulk)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's backend interface
        local_address: str | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        spare = await self.spares.take(host, port)
        if spare is not None:
            return spare
        options = {"local_address": local_address, "socket_options": socket_options}
        return await self._connect(host, port, timeout=timeout, **options)

    async def _connect(
        self, host: str, port: int, **options: typing.Any
    ) -> httpcore.AsyncNetworkStream:
        """A connection to ``host:port`` at an address the policy allows (``options``: the
        rest of httpcore's ``connect_tcp`` arguments)."""
        try:
            addresses = await self.hosts.get(host)
        except SourceTimeout as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host} does not resolve")
        allowed = [a for a in addresses if self._policy.allows(a)]
        if not allowed:
            raise httpcore.ConnectError(
                f"{host} resolves only to non-public addresses ({addresses[0]}); refused"
            )
        if self._trusted is not None:
            await self._trusted()
        last: Exception | None = None
        for addr in allowed:
            try:
                return await self._inner.connect_tcp(str(addr), port, **options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's backend interface
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:  # pragma: no cover - never used
        raise httpcore.ConnectError("unix sockets are not used")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


# an idle connection is closed after this long (servers close theirs after 5 to 75 s)
_KEEP_ALIVE_SECONDS = 20.0


class _GuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(
        self, ssl_context: ssl.SSLContext, backend: _GuardedBackend, limit: int, per_host: int
    ):
        super().__init__(verify=ssl_context)
        # httpx has no public seam for a network backend or for its pool; it drives the pool
        # only through httpcore's request interface, which OriginPools offers
        self._pool = OriginPools(  # type: ignore[assignment]
            ssl_context=ssl_context,
            network_backend=backend,
            limit=limit,
            per_host=per_host,
            keepalive_expiry=_KEEP_ALIVE_SECONDS,
        )
        self._spares = backend.spares

    async def aclose(self) -> None:
        await self._spares.aclose()
        await super().aclose()

    async def __aexit__(self, *exc: typing.Any) -> None:
        await self._spares.aclose()  # ``async with`` closes through here, not ``aclose``
        await super().__aexit__(*exc)


def make_http_client(
    settings: HTTPSettings,
    resolver: dns.asyncresolver.Resolver,
    *,
    user_agent: str,
    connections: int = 50,
    bulk_dns: Callable[[], BulkResolver | None] | None = None,
) -> httpx.AsyncClient:
    """An HTTP client whose every connection goes through the address policy.

    At most ``connections`` requests in flight and connections kept, at most
    ``settings.connections_per_host`` to one origin. Host names are resolved through
    ``bulk_dns()`` (c-ares) when it gives a resolver, else through ``resolver``.
    """
    tls = ClientTLS(settings.ca_bundle)
    policy = AddressPolicy(settings.allow_private)
    backend = _GuardedBackend(resolver, policy, bulk_dns, trusted=tls.ready)
    return GuardedClient(
        backend.hosts,
        backend.spares,
        tls.context,
        transport=_GuardedTransport(
            tls.context, backend, connections, settings.connections_per_host
        ),
        headers={"User-Agent": user_agent},
        follow_redirects=False,
        timeout=httpx.Timeout(settings.timeout),
        trust_env=False,
    )


@dataclass(slots=True)
class FetchResult:
    """A bounded HTTP answer, with every URL of its redirect chain."""

    status: int
    headers: httpx.Headers
    body: bytes
    chain: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.chain[-1]


async def fetch(
    client: httpx.AsyncClient,
    url: str,
    *,
    max_bytes: int,
    deadline: float,
    accept: str = "*/*",
    max_redirects: int = 5,
    https_only: bool = False,
    source: str = "http",
    before_hop: Callable[[str], Awaitable[object]] | None = None,
    turn: Turn | None = None,
) -> FetchResult:
    """GET ``url`` following at most ``max_redirects`` redirects, within ``deadline`` seconds;
    ``before_hop`` is awaited with each redirect's URL before it is asked (a rate limiter: the
    server a redirect leads to counts that request like any other). ``turn``: the first
    request's turn at its server, held right before the request's head is written and told
    once it has been (``Turn.leaving``, ``Turn.sent``).

    Raises ``SourceTimeout`` past the deadline, ``SourceProtocolError`` for a body over
    ``max_bytes`` or a forbidden redirect, ``SourceUnavailable`` when no connection can be made.
    Any HTTP status is returned, not raised: 404, 429 and 5xx mean different things to callers.
    """
    chain = [url]
    # a redirect's hop is not the turn's request: that server's turn was taken apart
    extensions = {} if turn is None else {"trace": turn.tracer(lambda: len(chain) == 1)}
    try:
        async with asyncio.timeout(deadline):
            while True:
                current = chain[-1]
                if https_only and not current.startswith("https://"):
                    raise SourceProtocolError(f"refused non-HTTPS URL {current}", source=source)
                if before_hop is not None and len(chain) > 1:
                    await before_hop(current)
                async with client.stream(
                    "GET", current, headers={"Accept": accept}, extensions=extensions
                ) as response:
                    if response.is_redirect and "location" in response.headers:
                        if len(chain) > max_redirects:
                            raise SourceProtocolError(
                                f"more than {max_redirects} redirects from {url}", source=source
                            )
                        chain.append(urljoin(current, response.headers["location"]))
                        continue
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > max_bytes:
                        raise SourceProtocolError(
                            f"{current}: answer of {declared} bytes is over the {max_bytes} cap",
                            source=source,
                        )
                    body = bytearray()
                    async for chunk in response.aiter_raw():
                        body += chunk
                        if len(body) > max_bytes:
                            raise SourceProtocolError(
                                f"{current}: answer over the {max_bytes}-byte cap", source=source
                            )
                    return FetchResult(response.status_code, response.headers, bytes(body), chain)
    except TimeoutError:
        raise SourceTimeout(
            f"{chain[-1]}: no complete answer within the {deadline:g} s limit", source=source
        ) from None
    except httpx.TimeoutException as exc:
        raise SourceTimeout(
            f"{chain[-1]}: timed out ({type(exc).__name__}) within the {deadline:g} s limit",
            source=source,
        ) from None
    except httpx.HTTPError as exc:
        reason = _untrusted(exc)
        if reason is not None:
            raise UntrustedCertificate(
                f"{chain[-1]}: certificate not trusted ({reason})", source=source
            ) from None
        raise SourceUnavailable(
            f"{chain[-1]}: {exc or type(exc).__name__}", source=source
        ) from None


class UntrustedCertificate(SourceUnavailable):
    """The server answered TLS with a certificate that does not verify for the name."""


def _untrusted(exc: BaseException) -> str | None:
    """The verification error behind ``exc`` when a certificate was refused, else None."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return str(seen.verify_message or seen.reason or "verification failed")
        seen = seen.__cause__ or seen.__context__
    return None


async def tcp_exchange(
    resolver: dns.asyncresolver.Resolver,
    host: str,
    port: int,
    query: bytes,
    *,
    max_bytes: int,
    deadline: float,
    source: str = "tcp",
    bulk: BulkResolver | None = None,
) -> bytes:
    """Send ``query``, read until the server closes, within ``deadline`` and ``max_bytes``."""
    try:
        async with asyncio.timeout(deadline):
            addresses = await resolve_host(resolver, host, bulk)
            if not addresses:
                raise SourceUnavailable(f"{host} does not resolve", source=source)
            last: OSError | None = None
            for addr in addresses:
                try:
                    reader, writer = await asyncio.open_connection(str(addr), port)
                    break
                except OSError as exc:
                    last = exc
            else:
                raise SourceUnavailable(f"{host}:{port}: {last}", source=source)
            try:
                writer.write(query)
                await writer.drain()
                data = bytearray()
                while chunk := await reader.read(65536):
                    data += chunk
                    if len(data) > max_bytes:
                        raise SourceProtocolError(
                            f"{host}:{port}: answer over the {max_bytes}-byte cap", source=source
                        )
                return bytes(data)
            finally:
                writer.close()
                try:
                    await writer.wait_closed()
                except OSError:
                    pass
    except TimeoutError:
        raise SourceTimeout(
            f"{host}:{port}: no complete answer within the {deadline:g} s limit", source=source
        ) from None
    except ConnectionError as exc:
        raise SourceUnavailable(f"{host}:{port}: {exc}", source=source) from None
