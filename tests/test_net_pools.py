"""HTTP connections per origin (kept, bounded, closed least recently used first) and host names
resolved through c-ares when a batch's channel is there: real HTTPS servers and nameservers on
loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpcore
import httpx
import pytest

from notifier import net, spares
from notifier.config import Settings
from notifier.errors import SourceTimeout, SourceUnavailable
from notifier.hostcache import GuardedClient
from notifier.origins import OriginPools
from notifier.sandbox.dns import DNSServer
from notifier.sandbox.web import Reply, Request, SandboxCA, WebServer
from notifier.sources.ares import BulkResolver

REGISTRY = "rdap.registry.example"
OTHERS = [f"www.host{i}.example" for i in range(30)]


class CountingServer(WebServer):
    """A keep-alive HTTPS server that counts the connections made to it and those still open."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.keep_alive = True
        self.connections = 0
        self.open = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.writers.append(writer)
        try:
            await super()._serve(reader, writer)
        finally:
            self.open -= 1


@dataclass
class Box:
    web: CountingServer
    dns: DNSServer
    settings: Settings

    def url(self, host: str, path: str = "/") -> str:
        return f"https://{host}:{self.web.port}{path}"


@pytest.fixture
async def box(ca: SandboxCA, ca_pem: Path) -> AsyncIterator[Box]:
    dns = DNSServer()
    for name in [REGISTRY, *OTHERS]:
        dns.add_host(name, "127.0.0.1", ptr=False)
    web = CountingServer(ca=ca, hostnames=[REGISTRY, *OTHERS])
    web.route("/*", Reply(200, b"ok\n", {"Content-Type": "text/plain"}))
    await dns.start()
    await web.start()
    settings = Settings.from_mapping(
        {
            "dns": {"nameservers": [dns.nameserver], "timeout": 1},
            "http": {"ca_bundle": str(ca_pem), "allow_private": True, "timeout": 2},
        }
    )
    try:
        yield Box(web, dns, settings)
    finally:
        await web.stop()
        await dns.stop()


def client(
    settings: Settings, *, connections: int = 50, bulk: BulkResolver | None = None
) -> httpx.AsyncClient:
    return net.make_http_client(
        settings.http,
        net.make_resolver(settings.dns),
        user_agent="notifier-test",
        connections=connections,
        bulk_dns=lambda: bulk,
    )


def pools(http: httpx.AsyncClient) -> OriginPools:
    found = http._transport._pool  # type: ignore[attr-defined]
    assert isinstance(found, OriginPools)
    return found


async def get(http: httpx.AsyncClient, url: str) -> int:
    result = await net.fetch(http, url, max_bytes=1024, deadline=5)
    return result.status


class TestOrigins:
    async def test_a_registry_keeps_its_connection_among_many_hosts(self, box: Box) -> None:
        """Asked between requests to 30 other hosts, with room for 8 connections in all, the
        registry is asked over one connection throughout: the hosts asked once make room for
        each other, least recently used first."""
        async with client(box.settings, connections=8) as http:
            for other in OTHERS:
                assert await get(http, box.url(REGISTRY, "/ip/1")) == 200
                assert await get(http, box.url(other)) == 200
            kept = pools(http)
            assert len(kept.origins) <= 8 and kept.open_connections <= 8
            port = box.web.port
            assert kept.origins[-2:] == [
                f"https://{REGISTRY}:{port}",
                f"https://{OTHERS[-1]}:{port}",
            ]
            assert f"https://{OTHERS[0]}:{port}" not in kept.origins
        # one connection for the registry, one for each other host
        assert box.web.connections == 1 + len(OTHERS)
        await asyncio.sleep(0.2)
        assert box.web.open == 0  # all closed with the client

    async def test_closed_origins_close_their_connections(self, box: Box) -> None:
        """An origin closed to make room closes its connection at once: no more than the bound
        stay open at the server."""
        async with client(box.settings, connections=4) as http:
            for other in OTHERS[:12]:
                assert await get(http, box.url(other)) == 200
            await asyncio.sleep(0.2)
            assert box.web.open <= 4
            assert len(pools(http).origins) == 4

    async def test_connections_per_host(self, box: Box) -> None:
        """Twenty requests at once to one host use at most ``connections_per_host``
        connections, and no more are answered at the same time."""
        busy = peak = 0

        async def slow(request: Request) -> Reply:
            nonlocal busy, peak
            busy += 1
            peak = max(peak, busy)
            await asyncio.sleep(0.05)
            busy -= 1
            return Reply(200, b"ok\n")

        box.web.route("/slow", slow)
        settings = box.settings.model_copy(
            update={"http": box.settings.http.model_copy(update={"connections_per_host": 3})}
        )
        async with client(settings) as http:
            statuses = await asyncio.gather(
                *(get(http, box.url(REGISTRY, "/slow")) for _ in range(20))
            )
        assert statuses == [200] * 20
        assert peak <= 3 and box.web.connections <= 3

    async def test_a_hosts_connections_ask_the_nameserver_once(self, box: Box) -> None:
        """Three requests at once to one host open three connections, and its name is asked
        once (A and AAAA); ``look_up`` asked ahead leaves nothing for the connections to ask."""
        box.web.route("/slow", Reply(200, b"ok\n", drip=0.01))
        async with client(box.settings) as http:
            statuses = await asyncio.gather(
                *(get(http, box.url(REGISTRY, "/slow")) for _ in range(3))
            )
            assert statuses == [200] * 3 and box.web.connections == 3
            asked = [q.name for q in box.dns.queries]
            assert sorted(asked) == [REGISTRY, REGISTRY]
            assert isinstance(http, GuardedClient)
            await http.look_up(box.url(OTHERS[0]))
            assert await get(http, box.url(OTHERS[0])) == 200
            assert [q.name for q in box.dns.queries].count(OTHERS[0]) == 2

    async def test_a_request_waits_for_its_host_within_the_timeout(self, box: Box) -> None:
        """With its host's connections all busy, a request waits at most the HTTP timeout and
        then fails as a timeout; other hosts are not held up, and a request given up (here
        cancelled) gives its turn back."""
        # a byte every 0.1 s: busy for 4 s without ever running past the read timeout
        box.web.route("/drip", Reply(200, b"x" * 40, drip=0.1))
        settings = box.settings.model_copy(
            update={
                "http": box.settings.http.model_copy(
                    update={"connections_per_host": 1, "timeout": 0.5}
                )
            }
        )
        async with client(settings) as http:
            first = asyncio.ensure_future(get(http, box.url(REGISTRY, "/drip")))
            await asyncio.sleep(0.2)
            with pytest.raises(SourceTimeout):
                await get(http, box.url(REGISTRY, "/other"))
            assert await get(http, box.url(OTHERS[0])) == 200
            assert not first.done()
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            assert await get(http, box.url(REGISTRY, "/again")) == 200


async def test_an_origin_idle_past_keep_alive_is_closed() -> None:
    """An origin nobody asked for longer than the keep-alive time is closed when the next
    request finishes, though no bound is reached; one asked meanwhile is kept."""
    web = CountingServer(bind=["127.0.0.1", "127.0.0.2"])
    web.route("/*", Reply(200, b"ok\n"))
    now = [0.0]
    kept = OriginPools(
        ssl_context=SandboxCA().client_context(),
        network_backend=httpcore.AnyIOBackend(),
        limit=8,
        per_host=2,
        keepalive_expiry=20,
        clock=lambda: now[0],
    )

    async def ask(host: str) -> None:
        response = await kept.handle_async_request(
            httpcore.Request("GET", f"http://{host}:{web.port}/", headers=[(b"Host", host)])
        )
        async for _ in response.stream:  # type: ignore[union-attr]
            pass
        await response.aclose()

    async with web:
        await ask("127.0.0.1")
        now[0] = 15
        await ask("127.0.0.2")
        assert len(kept.origins) == 2 and kept.open_connections == 2
        now[0] = 25  # the first idle for 25 s, the second for 10
        await ask("127.0.0.2")
        assert kept.origins == [f"http://127.0.0.2:{web.port}"]
        await asyncio.sleep(0.2)
        assert web.open == 1 and web.connections == 2
        await kept.aclose()
        await asyncio.sleep(0.2)
        assert web.open == 0


@pytest.fixture
async def decoy() -> AsyncIterator[DNSServer]:
    """A second nameserver that knows none of the names (what dnspython is pointed at when
    c-ares should answer)."""
    server = DNSServer()
    await server.start()
    yield server
    await server.stop()


class TestHostNamesThroughCares:
    async def test_cares_when_the_batch_has_a_channel(self, box: Box, decoy: DNSServer) -> None:
        """With a c-ares channel the connection's host name is asked there, not of dnspython's
        nameserver (which knows nothing); without one, dnspython's answer (none) stands."""
        bulk = BulkResolver(box.settings.dns)
        decoyed = box.settings.model_copy(
            update={"dns": box.settings.dns.model_copy(update={"nameservers": [decoy.nameserver]})}
        )
        try:
            resolver = net.make_resolver(decoyed.dns)
            through: list[BulkResolver | None] = [bulk]
            async with net.make_http_client(
                decoyed.http, resolver, user_agent="t", bulk_dns=lambda: through[0]
            ) as http:
                assert await get(http, box.url(REGISTRY)) == 200
                asked = {(q.name, q.rtype) for q in box.dns.queries}
                assert {(REGISTRY, "A"), (REGISTRY, "AAAA")} <= asked
                assert decoy.queries == []
                through[0] = None
                with pytest.raises(SourceUnavailable, match="does not resolve"):
                    await get(http, box.url(OTHERS[0]))
                assert {q.name for q in decoy.queries} == {OTHERS[0]}
        finally:
            await bulk.close()

    async def test_address_policy_holds_with_cares(self, box: Box) -> None:
        """A name c-ares resolves to loopback or a private address is refused unless private
        addresses are allowed, as with dnspython."""
        box.dns.add_host("inside.example", "10.1.2.3", ptr=False)
        strict = box.settings.model_copy(
            update={"http": box.settings.http.model_copy(update={"allow_private": False})}
        )
        bulk = BulkResolver(strict.dns)
        try:
            async with client(strict, bulk=bulk) as http:
                for host in (REGISTRY, "inside.example"):
                    with pytest.raises(SourceUnavailable, match="non-public"):
                        await get(http, box.url(host))
            assert box.web.connections == 0
        finally:
            await bulk.close()

    async def test_resolve_host_maps_cares_answers_and_failures(self, box: Box) -> None:
        """``resolve_host`` gives the same addresses either way; a name that does not exist is
        an empty list, a silent nameserver a SourceTimeout."""
        box.dns.add("dual.example", "A", "127.0.0.1")
        box.dns.add("dual.example", "AAAA", "::1")
        box.dns.misbehave("silent.example", drop=True)
        resolver = net.make_resolver(box.settings.dns)
        bulk = BulkResolver(box.settings.dns)
        try:
            for through in (None, bulk):
                found = await net.resolve_host(resolver, "dual.example", through)
                assert sorted(map(str, found)) == ["127.0.0.1", "::1"]
                assert await net.resolve_host(resolver, "nowhere.example", through) == []
                assert [str(a) for a in await net.resolve_host(resolver, "[::1]", through)] == [
                    "::1"
                ]
                with pytest.raises(SourceTimeout, match="silent.example"):
                    await net.resolve_host(resolver, "silent.example", through)
        finally:
            await bulk.close()


async def _spared(http: GuardedClient, count: int) -> None:
    async with asyncio.timeout(2):
        while http.spares.opened < count:
            await asyncio.sleep(0.01)


class TestSpares:
    """Connections opened ahead to a server about to be asked many times (``Spares``)."""

    async def test_the_next_connections_take_the_spares(self, box: Box) -> None:
        """Two spares opened ahead (TLS 1.3: the server's session tickets wait unread on them)
        carry the next two requests at once: the server sees no third connection."""
        box.web.route("/slow", Reply(200, b"ok\n", drip=0.01))
        async with client(box.settings) as http:
            assert isinstance(http, GuardedClient)
            http.spare(box.url(REGISTRY), 2)
            await _spared(http, 2)
            assert box.web.connections == 2
            statuses = await asyncio.gather(*(get(http, box.url(REGISTRY, "/slow")) for _ in "ab"))
            assert statuses == [200, 200]
            assert http.spares.used == 2 and box.web.connections == 2

    async def test_a_spare_is_kept_with_nothing_left_to_read(self, box: Box) -> None:
        """What the server sends after the handshake (TLS 1.3 session tickets) is read when the
        spare is opened: the request that takes it has nothing to read first."""
        async with client(box.settings) as http:
            assert isinstance(http, GuardedClient)
            http.spare(box.url(REGISTRY), 1)
            await _spared(http, 1)
            [spare] = [s for kept in http.spares._kept.values() for s in kept]
            assert spare.stream.get_extra_info("ssl_object").version() == "TLSv1.3"
            assert not spare.stream.get_extra_info("is_readable")

    async def test_a_spare_the_server_closed_is_not_used(self, box: Box) -> None:
        """A spare whose server hung up meanwhile is dropped: the request connects afresh."""
        async with client(box.settings) as http:
            assert isinstance(http, GuardedClient)
            http.spare(box.url(REGISTRY), 1)
            await _spared(http, 1)
            for writer in box.web.writers:
                writer.close()
            await asyncio.sleep(0.1)
            assert await get(http, box.url(REGISTRY)) == 200
            assert http.spares.used == 0 and box.web.connections == 2

    async def test_a_spare_kept_too_long_is_not_used(
        self, box: Box, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Past ``KEEP_SECONDS`` a spare is closed rather than trusted to be still open."""
        monkeypatch.setattr(spares, "KEEP_SECONDS", 0.0)
        async with client(box.settings) as http:
            assert isinstance(http, GuardedClient)
            http.spare(box.url(REGISTRY), 1)
            await _spared(http, 1)
            assert await get(http, box.url(REGISTRY)) == 200
            assert http.spares.used == 0 and box.web.connections == 2
            await asyncio.sleep(0.1)
            assert box.web.open == 1  # the spare was closed, the request's connection kept
        await asyncio.sleep(0.1)
        assert box.web.open == 0

    async def test_spares_wait_for_their_signal(self, box: Box) -> None:
        """Spares asked for ``after`` an event (the first request having left) open only once
        it is set: until then the server sees no connection."""
        after = asyncio.Event()
        async with client(box.settings) as http:
            assert isinstance(http, GuardedClient)
            http.spare(box.url(REGISTRY), 2, after=after)
            await asyncio.sleep(0.2)
            assert box.web.connections == 0 and http.spares.opened == 0
            after.set()
            await _spared(http, 2)
            assert box.web.connections == 2

    async def test_spares_go_with_the_client(self, box: Box) -> None:
        """Spares nobody used are closed with the client; plain http and a host that does not
        resolve open none."""
        async with client(box.settings) as http:
            assert isinstance(http, GuardedClient)
            http.spare(box.url(REGISTRY), 2)
            http.spare(f"http://{REGISTRY}:{box.web.port}/", 2)
            http.spare(box.url("nowhere.example"), 2)
            await _spared(http, 2)
            await asyncio.sleep(0.2)
            assert http.spares.opened == 2 and box.web.open == 2
        await asyncio.sleep(0.1)
        assert box.web.open == 0


async def test_a_domain_registrys_name_is_asked_once_ahead(box: Box, tmp_path: Path) -> None:
    """A batch's reverse DNS hands its names on (``domain_registry_ahead``): the first name under
    a top-level domain has that domain's RDAP server's name resolved, once; a later name under
    it asks nothing more, nor does one under a top-level domain no server is listed for."""
    import json

    from notifier.sources import LookupContext
    from notifier.sources.rdap import domain_registry_ahead

    folder = tmp_path / "bootstrap"
    folder.mkdir()
    services = [[["example"], [box.url(REGISTRY)]]]
    (folder / "dns.json").write_text(json.dumps({"version": "1.0", "services": services}))
    settings = box.settings.model_copy(
        update={"rdap": box.settings.rdap.model_copy(update={"bootstrap": str(folder)})}
    )
    async with client(settings) as http:
        ctx = LookupContext(
            settings=settings,
            resolver=net.make_resolver(settings.dns),
            http=http,
            limiter=net.RateLimiter(100),
        )
        for names in [("www.shop.example", "shop.example"), ("db.other.example",), ("a.nowhere",)]:
            domain_registry_ahead(names, ctx)
            async with asyncio.timeout(2):
                while len(box.dns.queries) < 2:
                    await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert sorted(q.name for q in box.dns.queries) == [REGISTRY, REGISTRY]
        assert box.web.connections == 0  # the name only: no connection is made ahead
