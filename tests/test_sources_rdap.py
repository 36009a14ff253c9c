"""IP RDAP: the pure parser on real captured answers, and the source against loopback registries."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from notifier import net
from notifier.config import Settings
from notifier.errors import SourceProtocolError, SourceTimeout, SourceUnavailable
from notifier.hostcache import GuardedClient
from notifier.models import Role, Target
from notifier.sandbox.rdap import RDAPRegistry, entity_json, network_json, write_bootstrap
from notifier.sandbox.web import SandboxCA
from notifier.sources import LookupContext, Query
from notifier.sources.ares import BulkResolver
from notifier.sources.rdap import (
    MAX_DEPTH,
    clear_bootstrap_cache,
    decode_json,
    load_bootstrap,
    lookup,
    parse_bootstrap,
    parse_rdap,
    parse_retry_after,
)
from notifier.sources.rdap.client import RDAPClient, host_of
from notifier.sources.rdap.stored import freshness

# file -> (registry, abuse addresses in order; [] where the answer names no abuse desk)
CORPUS: dict[str, tuple[str, list[str]]] = {
    "afrinic-196.11.240.215.json": ("AFRINIC", []),
    "afrinic-2001_43f8_7b0__.json": ("AFRINIC", []),
    "apnic-2001_240_10c_1__ca20_9d1d.json": ("APNIC", []),
    "apnic-210.107.73.73.json": ("APNIC", ["hostmaster@nic.or.kr"]),
    "arin-2001_4860_4860__8888.json": ("ARIN", ["arin-contact@google.com"]),
    "arin-74.125.225.229.json": ("ARIN", ["arin-contact@google.com"]),
    "lacnic-200.57.141.161.json": ("LACNIC", ["operacion.redes@triara.com"]),
    "lacnic-2801_10_c000__.json": ("LACNIC", ["sistemas.red@uco.edu.co"]),
    "ripencc-2a00_2381_ffff__1.json": (
        "RIPE NCC",
        ["zzdnsr@bt.com", "steve.a.marshall@bt.com", "lee.bailey-hague@bt.com"],
    ),
    "ripencc-62.239.237.1.json": (
        "RIPE NCC",
        ["zzdnsr@bt.com", "steve.a.marshall@bt.com", "lee.bailey-hague@bt.com"],
    ),
}
RIPE_IP = "62.239.237.1"


def corpus_ip(name: str) -> str:
    """The queried address, from the capture's file name (``_`` stands for ``:``)."""
    return name.split("-", 1)[1].removesuffix(".json").replace("_", ":")


def load(corpus_dir: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((corpus_dir / "rdap" / "ip" / name).read_text("utf-8"))
    return data


def host_cidr(ip: str) -> str:
    return str(ipaddress.ip_network(ip))


def query(ip: str) -> Query:
    return Query(target=Target(ip=ipaddress.ip_address(ip)))


class RecordingLimiter(net.RateLimiter):
    """A real limiter that also keeps the pauses servers asked for."""

    def __init__(self, rate: float = 1000.0) -> None:
        super().__init__(rate)
        self.pauses: list[tuple[str, float]] = []

    def pause(self, key: str, seconds: float) -> None:
        self.pauses.append((key, seconds))
        super().pause(key, seconds)


CtxFactory = Callable[..., LookupContext]
Starter = Callable[..., Awaitable[None]]


@pytest.fixture(autouse=True)
def _fresh_bootstrap() -> None:
    clear_bootstrap_cache()


@pytest.fixture
async def make_ctx(tmp_path: Path) -> AsyncIterator[CtxFactory]:
    clients: list[Any] = []

    def factory(
        bootstrap: str,
        *,
        allow_private: bool = True,
        ca_bundle: str = "",
        limiter: net.RateLimiter | None = None,
        clock: Callable[[], datetime] | None = None,
        **rdap: Any,
    ) -> LookupContext:
        settings = Settings.from_mapping(
            {
                "dns": {"nameservers": ["127.0.0.1:9"], "timeout": 0.5},
                "rdap": {"bootstrap": bootstrap, "timeout": 2, "max_retry_after": 1, **rdap},
                "http": {"allow_private": allow_private, "ca_bundle": ca_bundle},
                "state": {"dir": str(tmp_path / "state")},
            }
        )
        resolver = net.make_resolver(settings.dns)
        http = net.make_http_client(settings.http, resolver, user_agent="notifier-tests")
        clients.append(http)
        return LookupContext(
            settings=settings,
            resolver=resolver,
            http=http,
            limiter=limiter or net.RateLimiter(1000.0),
            **({"clock": clock} if clock is not None else {}),
        )

    yield factory
    for client in clients:
        await client.aclose()


@pytest.fixture
async def start() -> AsyncIterator[Starter]:
    running: list[RDAPRegistry] = []

    async def starter(*registries: RDAPRegistry) -> None:
        for registry in registries:
            await registry.start()
            running.append(registry)

    yield starter
    for registry in running:
        await registry.stop()


def ripe_registry(corpus_dir: Path, **kwargs: Any) -> RDAPRegistry:
    data = load(corpus_dir, "ripencc-62.239.237.1.json")
    return RDAPRegistry("RIPE NCC", networks={"62.239.237.0/24": data}, **kwargs)


class TestParseCorpus:
    @pytest.mark.corpus
    @pytest.mark.parametrize("name", sorted(CORPUS))
    def test_abuse_addresses(self, corpus_dir: Path, name: str) -> None:
        """Each registry's real answer yields exactly its abuse desk, in the order published."""
        registry, expected = CORPUS[name]
        record = parse_rdap(load(corpus_dir, name))
        abuse = [c.address for c in record.contacts if c.confidence == 0.9]
        assert abuse == expected
        assert record.network.registry == registry
        assert record.abuse_found is bool(expected)
        assert all(c.role is Role.NETWORK and c.sources == ("rdap",) for c in record.contacts)

    @pytest.mark.corpus
    @pytest.mark.parametrize("name", [n for n in CORPUS if n.startswith("afrinic")])
    def test_afrinic_without_roles(self, corpus_dir: Path, name: str) -> None:
        """AFRINIC entities carry no roles: no contact at all, and a note sends us to WHOIS."""
        record = parse_rdap(load(corpus_dir, name))
        assert record.contacts == ()
        assert any("no roles" in n and "WHOIS" in n for n in record.notes)

    @pytest.mark.corpus
    def test_technical_fallback(self, corpus_dir: Path) -> None:
        """Without an abuse role the technical contact stands in, at lower confidence."""
        record = parse_rdap(load(corpus_dir, "apnic-2001_240_10c_1__ca20_9d1d.json"))
        assert [(c.address, c.confidence) for c in record.contacts] == [
            ("hostmaster@nic.ad.jp", 0.5)
        ]
        assert "no abuse contact published" in record.contacts[0].provenance[0]

    @pytest.mark.corpus
    def test_arin_network(self, corpus_dir: Path) -> None:
        """ARIN's zero-padded addresses become a CIDR; the org comes from the registrant."""
        record = parse_rdap(load(corpus_dir, "arin-74.125.225.229.json"))
        network = record.network
        assert network.cidrs == ("74.125.0.0/16",)
        assert (network.start, network.end) == ("74.125.0.0", "74.125.255.255")
        assert network.handle == "NET-74-125-0-0-1"
        assert network.org == "Google Inc."
        # the same POC is listed twice (nested and top level in the v6 answer): one contact
        v6 = parse_rdap(load(corpus_dir, "arin-2001_4860_4860__8888.json"))
        assert len(v6.contacts) == 1

    @pytest.mark.corpus
    def test_ripe_provenance(self, corpus_dir: Path) -> None:
        """Provenance names the network, the registry and the entity."""
        record = parse_rdap(load(corpus_dir, "ripencc-62.239.237.1.json"))
        assert record.network.cidrs == ("62.239.237.0/24",)
        assert record.network.country == "GB"
        assert record.contacts[0].provenance == (
            "abuse contact of 62.239.237.0/24, RIPE NCC RDAP, entity BTCR3-RIPE",
        )

    @pytest.mark.corpus
    def test_apnic_pref_and_dedupe(self, corpus_dir: Path) -> None:
        """APNIC lists the IRT mailbox twice (with and without pref): one contact."""
        record = parse_rdap(load(corpus_dir, "apnic-210.107.73.73.json"))
        assert [c.address for c in record.contacts] == ["hostmaster@nic.or.kr"]
        assert record.network.cidrs == ("210.107.0.0/17",)


class TestParseRDAP:
    def test_pref_order(self) -> None:
        """E-mails are ordered by jCard pref, most preferred first."""
        entity = entity_json("A1-RIPE", ["abuse"], emails=[])
        entity["vcardArray"][1] += [
            ["email", {"pref": "50"}, "text", "second@isp.example"],
            ["email", {}, "text", "last@isp.example"],
            ["email", {"pref": 1}, "text", "first@isp.example"],
        ]
        data = network_json("62.239.0.0/16", "N1")
        data["entities"] = [entity]
        record = parse_rdap(data)
        assert [c.address for c in record.contacts] == [
            "first@isp.example",
            "second@isp.example",
            "last@isp.example",
        ]

    def test_crlf_dropped(self) -> None:
        """An e-mail value carrying CRLF (header injection) is dropped and a note says so."""
        data = network_json(
            "62.239.0.0/16",
            "N1",
            abuse_email=["abuse@isp.example\r\nBcc: victim@else.example", "abuse2@isp.example"],
        )
        record = parse_rdap(data)
        assert [c.address for c in record.contacts] == ["abuse2@isp.example"]
        assert any("control characters" in n for n in record.notes)

    def test_placeholder_dropped(self) -> None:
        """LACNIC's removed@lacnic.net placeholder is not a mailbox."""
        data = network_json("200.57.0.0/16", "N1", abuse_email="removed@lacnic.net")
        record = parse_rdap(data)
        assert record.contacts == ()
        assert any("placeholder" in n for n in record.notes)

    def test_deep_nesting_bounded(self) -> None:
        """Entities nested past the depth bound are ignored, with a note, and nothing crashes."""
        deep = entity_json("DEEP", ["abuse"], emails=["deep@isp.example"])
        for level in range(3 * MAX_DEPTH):
            deep = {"handle": f"L{level}", "roles": ["administrative"], "entities": [deep]}
        shallow = entity_json("S1", ["abuse"], emails=["abuse@isp.example"])
        data = network_json("62.239.0.0/16", "N1")
        data["entities"] = [deep, shallow]
        record = parse_rdap(data)
        assert [c.address for c in record.contacts] == ["abuse@isp.example"]
        assert any("cut at" in n for n in record.notes)

    def test_nested_within_bound(self) -> None:
        """An abuse entity a few levels down (ARIN puts it under the org) is found."""
        data = network_json("74.125.0.0/16", "N1", abuse_email="abuse@isp.example", nested=True)
        record = parse_rdap(data)
        assert [c.address for c in record.contacts] == ["abuse@isp.example"]

    def test_fallback_order(self) -> None:
        """noc beats technical beats registrant when no abuse role exists; registrant is 0.4."""
        data = network_json("62.239.0.0/16", "N1")
        data["entities"] = [
            entity_json("R1", ["registrant"], emails=["owner@isp.example"]),
            entity_json("T1", ["technical"], emails=["tech@isp.example"]),
            entity_json("N1", ["noc"], emails=["noc@isp.example"]),
        ]
        assert [c.address for c in parse_rdap(data).contacts] == ["noc@isp.example"]
        data["entities"] = data["entities"][:1]
        only = parse_rdap(data).contacts
        assert [(c.address, c.confidence) for c in only] == [("owner@isp.example", 0.4)]

    def test_extensions(self) -> None:
        """cidr0 prefixes and ARIN's originas0 are read."""
        data = network_json("74.125.0.0/16", "NET-74-125-0-0-1", registry="ARIN", asn=15169)
        network = parse_rdap(data).network
        assert network.cidrs == ("74.125.0.0/16",)
        assert network.asn == 15169
        assert network.registry == "ARIN"

    def test_wrong_object_class(self) -> None:
        """An answer that is not an ip network is a protocol error."""
        with pytest.raises(SourceProtocolError):
            parse_rdap({"objectClassName": "domain", "ldhName": "isp.example"})
        with pytest.raises(SourceProtocolError):
            parse_rdap({"objectClassName": ["ip network"]})

    def test_junk_shapes(self) -> None:
        """Junk where objects should be (strings, numbers, nulls) is skipped, not fatal."""
        data: dict[str, Any] = {
            "objectClassName": "ip network",
            "startAddress": 7,
            "endAddress": None,
            "entities": ["x", 3, {"roles": "abuse"}, {"roles": ["abuse"], "vcardArray": "v"}],
            "links": "nope",
            "port43": ["x"],
        }
        record = parse_rdap(data)
        assert record.contacts == ()
        assert record.network.cidrs == ()

    def test_decode_json(self) -> None:
        """Malformed, non-object and absurdly nested JSON all become SourceProtocolError."""
        for body in (b"{not json", b"[1, 2]", b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000):
            with pytest.raises(SourceProtocolError):
                decode_json(body, "test")


class TestBootstrapParse:
    def test_longest_prefix_https_first(self) -> None:
        """The longest matching prefix wins, and its HTTPS URL comes first."""
        boot = parse_bootstrap(
            "ipv4",
            {
                "services": [
                    [["62.0.0.0/8"], ["https://arin.example/rdap/"]],
                    [["62.239.0.0/16"], ["http://ripe.example/", "https://ripe.example"]],
                ]
            },
        )
        match = boot.match_ip(ipaddress.ip_address(RIPE_IP))
        assert match == ("62.239.0.0/16", ("https://ripe.example/", "http://ripe.example/"))
        assert boot.match_ip(ipaddress.ip_address("62.1.1.1")) == (
            "62.0.0.0/8",
            ("https://arin.example/rdap/",),
        )
        assert boot.match_ip(ipaddress.ip_address("8.8.8.8")) is None

    def test_ipv6_domain_asn(self) -> None:
        """IPv6 prefixes, label-wise domain suffixes and ASN ranges match as RFC 9224 says."""
        v6 = parse_bootstrap("ipv6", {"services": [[["2a00::/12"], ["https://r.example/"]]]})
        assert v6.match_ip(ipaddress.ip_address("2a00:2381:ffff::1")) is not None
        assert v6.match_ip(ipaddress.ip_address(RIPE_IP)) is None
        dns = parse_bootstrap(
            "dns",
            {
                "services": [
                    [["com"], ["https://com.example/"]],
                    [["b.com"], ["https://b.example/"]],
                ]
            },
        )
        assert dns.match_domain("a.b.com") == ("b.com", ("https://b.example/",))
        assert dns.match_domain("ab.com") == ("com", ("https://com.example/",))
        asn = parse_bootstrap(
            "asn", {"services": [[["1-100000"], ["https://a/"]], [["15000-16000"], ["https://b/"]]]}
        )
        assert asn.match_asn(15169) == ("15000-16000", ("https://b/",))

    def test_malformed_services_skipped(self) -> None:
        """Broken services and non-HTTP URLs are skipped; a document without services is refused."""
        boot = parse_bootstrap(
            "ipv4",
            {
                "services": [
                    "junk",
                    [["not-a-net", "62.0.0.0/8"], ["ftp://x/", "https://ok.example/"]],
                    [["63.0.0.0/8"], ["file:///etc/"]],
                ]
            },
        )
        assert boot.match_ip(ipaddress.ip_address(RIPE_IP)) == (
            "62.0.0.0/8",
            ("https://ok.example/",),
        )
        assert boot.match_ip(ipaddress.ip_address("63.1.1.1")) is None
        with pytest.raises(SourceProtocolError):
            parse_bootstrap("ipv4", {"version": "1.0"})


class TestShippedBootstrap:
    async def test_shipped_snapshot(self, make_ctx: CtxFactory) -> None:
        """With rdap.bootstrap "shipped" the shipped IANA snapshot is read, without any fetch."""
        ctx = make_ctx("shipped")
        v4 = await load_bootstrap("ipv4", ctx)
        match = v4.match_ip(ipaddress.ip_address(RIPE_IP))
        assert match is not None and match[1][0] == "https://rdap.db.ripe.net/"
        v6 = await load_bootstrap("ipv6", ctx)
        assert v6.match_ip(ipaddress.ip_address("2001:4860:4860::8888")) is not None
        dns = await load_bootstrap("dns", ctx)
        assert dns.match_domain("www.acme-widgets.com") is not None


class TestLiveBootstrap:
    async def test_default_is_iana_with_the_snapshot_as_fallback(
        self, make_ctx: CtxFactory
    ) -> None:
        """By default IANA's files are asked for; when that fails (here: the name does not
        resolve, the only nameserver is a closed loopback port) the shipped snapshot is used."""
        seen: list[tuple[str, dict[str, Any]]] = []
        ctx = make_ctx("")
        ctx.trace = lambda event, fields: seen.append((event, fields))
        v4 = await load_bootstrap("ipv4", ctx)
        match = v4.match_ip(ipaddress.ip_address(RIPE_IP))
        assert match is not None and match[1][0] == "https://rdap.db.ripe.net/"
        [(_, fields)] = [s for s in seen if s[0] == "rdap.bootstrap"]
        assert fields["url"] == "https://data.iana.org/rdap/ipv4.json"
        assert fields["from"] == "shipped snapshot"

    async def test_cached_by_its_caching_headers_and_revalidated(
        self, corpus_dir: Path, make_ctx: CtxFactory, start: Starter, tmp_path: Path
    ) -> None:
        """A fetched file is stored under the state dir and used while its max-age lasts (in
        this process and the next); once stale it is revalidated with its ETag (304: kept);
        when the server is gone a stale copy still answers."""
        registry = ripe_registry(corpus_dir)
        registry.bootstrap_max_age = 3600
        await start(registry)
        now = [datetime(2026, 6, 1, tzinfo=UTC)]
        ctx = make_ctx(registry.bootstrap_url, clock=lambda: now[0])

        def fetches() -> list[Any]:
            return [r for r in registry.requests if r.path.startswith("/bootstrap/")]

        await load_bootstrap("ipv4", ctx)
        assert len(fetches()) == 1
        assert list((tmp_path / "state" / "rdap-bootstrap").glob("*.json"))
        clear_bootstrap_cache()  # a new process: the stored copy is fresh, nothing is asked
        now[0] += timedelta(minutes=30)
        await load_bootstrap("ipv4", ctx)
        assert len(fetches()) == 1
        now[0] += timedelta(minutes=31)  # past max-age, even in this process
        v4 = await load_bootstrap("ipv4", ctx)
        assert len(fetches()) == 2
        assert fetches()[-1].headers.get("if-none-match", "").startswith('"')
        assert v4.match_ip(ipaddress.ip_address(RIPE_IP)) is not None
        await registry.stop()
        clear_bootstrap_cache()
        now[0] += timedelta(hours=2)
        v4 = await load_bootstrap("ipv4", ctx)
        match = v4.match_ip(ipaddress.ip_address(RIPE_IP))
        assert match is not None and match[1][0] == registry.base_url

    async def test_told_once_the_request_has_left_not_once_answered(
        self, corpus_dir: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """``asked`` is set when the bootstrap's request has left (a batch then starts its
        bulk DNS), while its answer is still on the way; a second caller joining the same fetch
        is told alike, and both get the file."""
        registry = ripe_registry(corpus_dir)
        await start(registry)
        registry.server.latency = 0.5
        ctx = make_ctx(registry.bootstrap_url)
        first, second = asyncio.Event(), asyncio.Event()
        loads = asyncio.gather(
            load_bootstrap("ipv4", ctx, asked=first), load_bootstrap("ipv4", ctx, asked=second)
        )
        async with asyncio.timeout(0.4):
            await first.wait()
            await second.wait()
        assert [r.path for r in registry.requests] == ["/bootstrap/ipv4.json"]
        assert not loads.done()
        for found in await loads:
            assert found.match_ip(ipaddress.ip_address(RIPE_IP)) is not None

    def test_freshness_rules(self) -> None:
        """max-age (less Age) wins over Expires; then a tenth of the age since Last-Modified,
        at most a day; no-cache means stale at once."""
        now = datetime(2026, 6, 1, 12, tzinfo=UTC)
        assert freshness({"Cache-Control": "public, max-age=600", "Age": "100"}, now) == (
            now + timedelta(seconds=500)
        )
        assert freshness(
            {"Expires": "Mon, 01 Jun 2026 13:00:00 GMT", "Date": "Mon, 01 Jun 2026 12:00:00 GMT"},
            now,
        ) == now + timedelta(hours=1)
        assert freshness({"Last-Modified": "Fri, 22 May 2026 12:00:00 GMT"}, now) == (
            now + timedelta(days=1)
        )
        assert freshness({"Last-Modified": "Mon, 01 Jun 2026 02:00:00 GMT"}, now) == (
            now + timedelta(hours=1)
        )
        assert freshness({"Cache-Control": "no-cache, max-age=600"}, now) == now
        assert freshness({"Expires": "0"}, now) == now


class TestRetryAfter:
    def test_forms(self) -> None:
        """Delay-seconds and HTTP-dates are understood; junk and negatives are not."""
        now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
        assert parse_retry_after("30", now) == 30
        assert parse_retry_after("Wed, 01 Jan 2025 12:00:10 GMT", now) == 10
        assert parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now) == 0
        for junk in (None, "", "-5", "soon", "nan", "inf"):
            assert parse_retry_after(junk, now) is None


class TestLookup:
    @pytest.mark.corpus
    @pytest.mark.parametrize("name", sorted(CORPUS))
    async def test_corpus_replay(
        self, corpus_dir: Path, tmp_path: Path, make_ctx: CtxFactory, start: Starter, name: str
    ) -> None:
        """Every captured answer, served from loopback, yields its registry's abuse desk."""
        ip = corpus_ip(name)
        data = load(corpus_dir, name)
        registry = RDAPRegistry(CORPUS[name][0], networks={host_cidr(ip): data})
        await start(registry)
        ctx = make_ctx(str(write_bootstrap(tmp_path / "boot", [registry])))
        report = await lookup(query(ip), ctx)
        abuse = [c.address for c in report.contacts if c.confidence == 0.9]
        assert abuse == CORPUS[name][1]
        assert report.network is not None and report.network.registry == CORPUS[name][0]
        served = json.dumps(data).encode()
        assert report.evidence[0].sha256 == hashlib.sha256(served).hexdigest()
        assert registry.requests[0].headers["accept"] == "application/rdap+json"
        if name.startswith("afrinic"):
            assert report.contacts == []
            assert any("WHOIS" in n for n in report.notes)

    @pytest.mark.corpus
    async def test_https(
        self, corpus_dir: Path, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """An HTTPS registry is trusted through http.ca_bundle."""
        ca = SandboxCA()
        registry = ripe_registry(corpus_dir, ca=ca)
        await start(registry)
        assert registry.base_url.startswith("https://")
        ctx = make_ctx(
            str(write_bootstrap(tmp_path / "boot", [registry])),
            ca_bundle=str(ca.pem_path(tmp_path / "ca")),
        )
        report = await lookup(query(RIPE_IP), ctx)
        assert "zzdnsr@bt.com" in [c.address for c in report.contacts]

    @pytest.mark.corpus
    async def test_a_batch_opens_spare_connections_to_a_registry(
        self, corpus_dir: Path, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """In a batch (a bulk resolver in the context) the first turn at a registry opens two
        connections ahead for the requests that follow, once per registry; a single lookup
        (``notify send``) opens none."""
        ca = SandboxCA()
        registry = ripe_registry(corpus_dir, ca=ca)
        await start(registry)
        boot = str(write_bootstrap(tmp_path / "boot", [registry]))
        ca_bundle = str(ca.pem_path(tmp_path / "ca"))
        single = make_ctx(boot, ca_bundle=ca_bundle)
        await lookup(query(RIPE_IP), single)
        assert isinstance(single.http, GuardedClient) and single.http.spares.opened == 0
        batch = make_ctx(boot, ca_bundle=ca_bundle)
        batch.bulk_dns = BulkResolver(batch.settings.dns)
        try:
            for _ in range(2):
                await lookup(query(RIPE_IP), batch)
            assert isinstance(batch.http, GuardedClient)
            async with asyncio.timeout(2):
                while batch.http.spares.opened < 2:
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)
            assert batch.http.spares.opened == 2
        finally:
            await batch.bulk_dns.close()

    async def test_ipv6(self, tmp_path: Path, make_ctx: CtxFactory, start: Starter) -> None:
        """IPv6 addresses go through the ipv6 bootstrap to the right registry."""
        data = network_json("2a00:2381::/32", "BT-V6", abuse_email="abuse@isp.example")
        registry = RDAPRegistry("RIPE NCC", networks={"2a00:2381::/32": data})
        await start(registry)
        ctx = make_ctx(str(write_bootstrap(tmp_path / "boot", [registry])))
        report = await lookup(query("2a00:2381:ffff::1"), ctx)
        assert [c.address for c in report.contacts] == ["abuse@isp.example"]
        assert registry.requests[0].path == "/ip/2a00:2381:ffff::1"

    async def test_bootstrap_url_cached(
        self, corpus_dir: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """A bootstrap base URL is fetched once per process, not once per query."""
        registry = ripe_registry(corpus_dir)
        await start(registry)
        ctx = make_ctx(registry.bootstrap_url)
        for _ in range(3):
            report = await lookup(query(RIPE_IP), ctx)
            assert report.contacts
        fetched = [r.path for r in registry.requests if r.path.startswith("/bootstrap/")]
        assert fetched == ["/bootstrap/ipv4.json"]

    async def test_bootstrap_longest_match(
        self, corpus_dir: Path, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """A /16 entry for one registry beats a /8 entry for another."""
        wide = RDAPRegistry("ARIN", blocks=["62.0.0.0/8"])
        narrow = ripe_registry(corpus_dir, blocks=["62.239.0.0/16"])
        await start(wide, narrow)
        ctx = make_ctx(str(write_bootstrap(tmp_path / "boot", [wide, narrow])))
        report = await lookup(query(RIPE_IP), ctx)
        assert report.contacts
        assert wide.request_count == 0 and narrow.request_count == 1

    async def test_no_bootstrap_match(
        self, corpus_dir: Path, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """An address no registry serves gives an empty report with a note, and no query."""
        registry = ripe_registry(corpus_dir)
        await start(registry)
        ctx = make_ctx(str(write_bootstrap(tmp_path / "boot", [registry])))
        report = await lookup(query("8.8.8.8"), ctx)
        assert report.contacts == [] and report.network is None
        assert any("no RDAP service" in n for n in report.notes)
        assert registry.request_count == 0

    async def test_missing_bootstrap(self, tmp_path: Path, make_ctx: CtxFactory) -> None:
        """A bootstrap folder without the file is SourceUnavailable, not a crash."""
        ctx = make_ctx(str(tmp_path / "nowhere"))
        with pytest.raises(SourceUnavailable):
            await lookup(query(RIPE_IP), ctx)

    async def test_not_found(
        self, corpus_dir: Path, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """A 404 is an empty report: the registry has no record."""
        registry = ripe_registry(corpus_dir, blocks=["62.0.0.0/8"])
        await start(registry)
        ctx = make_ctx(str(write_bootstrap(tmp_path / "boot", [registry])))
        report = await lookup(query("62.1.2.3"), ctx)
        assert report.contacts == [] and report.error is None
        assert any("404" in n for n in report.notes)

    async def test_rate_limited_then_served(
        self, corpus_dir: Path, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """Two 429s with Retry-After are waited out, the limiter is paused, the third succeeds."""
        registry = ripe_registry(corpus_dir)
        registry.rate_limit(times=2, retry_after="0.15")
        await start(registry)
        limiter = RecordingLimiter()
        ctx = make_ctx(str(write_bootstrap(tmp_path / "boot", [registry])), limiter=limiter)
        began = time.monotonic()
        report = await lookup(query(RIPE_IP), ctx)
        assert time.monotonic() - began >= 0.29
        assert "zzdnsr@bt.com" in [c.address for c in report.contacts]
        assert limiter.pauses == [("127.0.0.1", 0.15), ("127.0.0.1", 0.15)]
        assert registry.counts["62.239.237.0/24"] == 3
        assert sum("HTTP 429" in n for n in report.notes) == 2

    async def test_rate_limit_notice(
        self, corpus_dir: Path, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """A 200 carrying a "Rate Limit Notice" counts as rate-limited and is retried."""
        registry = ripe_registry(corpus_dir)
        registry.rate_limit(times=1, notice=True)
        await start(registry)
        ctx = make_ctx(str(write_bootstrap(tmp_path / "boot", [registry])), max_retry_after=0)
        report = await lookup(query(RIPE_IP), ctx)
        assert report.contacts
        assert any("Rate Limit Notice" in n for n in report.notes)
        assert registry.request_count == 2

    async def test_rate_limited_past_patience(
        self, corpus_dir: Path, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """A Retry-After longer than rdap.max_retry_after gives up at once, pausing the host."""
        registry = ripe_registry(corpus_dir)
        registry.rate_limit(times=5, retry_after="120")
        await start(registry)
        limiter = RecordingLimiter()
        ctx = make_ctx(str(write_bootstrap(tmp_path / "boot", [registry])), limiter=limiter)
        with pytest.raises(SourceUnavailable, match="120"):
            await lookup(query(RIPE_IP), ctx)
        assert registry.request_count == 1
        assert limiter.pauses == [("127.0.0.1", 120.0)]

    async def test_wait_budget(
        self, corpus_dir: Path, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """Waits add up against rdap.max_retry_after: the second long wait is not taken."""
        registry = ripe_registry(corpus_dir)
        registry.rate_limit(times=5, retry_after="0.3")
        await start(registry)
        ctx = make_ctx(str(write_bootstrap(tmp_path / "boot", [registry])), max_retry_after=0.5)
        with pytest.raises(SourceUnavailable, match="max_retry_after"):
            await lookup(query(RIPE_IP), ctx)
        assert registry.request_count == 2

    async def test_retries_bounded(
        self, corpus_dir: Path, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """A registry that keeps answering 429 is asked three times, then SourceUnavailable."""
        registry = ripe_registry(corpus_dir)
        registry.rate_limit(times=50, retry_after="0")
        await start(registry)
        ctx = make_ctx(str(write_bootstrap(tmp_path / "boot", [registry])))
        with pytest.raises(SourceUnavailable) as caught:
            await lookup(query(RIPE_IP), ctx)
        assert registry.request_count == 3
        assert caught.value.source == "rdap" and caught.value.target == RIPE_IP

    async def test_server_error_retried(
        self, corpus_dir: Path, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """A 500 is retried (with backoff bounded by max_retry_after) and the retry succeeds."""
        registry = ripe_registry(corpus_dir)
        registry.fail(times=1, status=500)
        await start(registry)
        ctx = make_ctx(str(write_bootstrap(tmp_path / "boot", [registry])), max_retry_after=0)
        report = await lookup(query(RIPE_IP), ctx)
        assert report.contacts and registry.request_count == 2

    async def test_politeness(
        self, corpus_dir: Path, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """Queries to one registry host are spaced by the per-host rate limiter."""
        registry = ripe_registry(corpus_dir)
        await start(registry)
        ctx = make_ctx(
            str(write_bootstrap(tmp_path / "boot", [registry])), limiter=net.RateLimiter(8.0)
        )
        began = time.monotonic()
        for _ in range(3):
            await lookup(query(RIPE_IP), ctx)
        assert time.monotonic() - began >= 0.24

    async def test_a_redirect_takes_a_turn_at_its_registry(
        self, corpus_dir: Path, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """The registry a redirect leads to counts that request: it is paced like any other."""

        class Recording(net.RateLimiter):
            def __init__(self) -> None:
                super().__init__(1000.0)
                self.keys: list[str] = []

            async def wait(self, key: str, *, confirm: bool = False) -> net.Turn:
                self.keys.append(key)
                return await super().wait(key, confirm=confirm)

        ripe = ripe_registry(corpus_dir)
        arin = RDAPRegistry("ARIN", blocks=["62.0.0.0/8"])
        arin.redirect(ripe, "62.0.0.0/8")
        await start(arin, ripe)
        limiter = Recording()
        ctx = make_ctx(str(write_bootstrap(tmp_path / "boot", [arin])), limiter=limiter)
        report = await lookup(query(RIPE_IP), ctx)
        assert report.contacts
        assert limiter.keys == [host_of(arin.base_url), host_of(ripe.base_url)]

    async def test_a_turn_ends_when_the_request_leaves_not_when_it_is_answered(
        self, corpus_dir: Path, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """The client says when a request's head was written; the next turn keeps its distance
        from that moment, and does not wait for the answer."""
        left: list[float] = []

        class Recording(net.RateLimiter):
            async def wait(self, key: str, *, confirm: bool = False) -> net.Turn:
                turn = await super().wait(key, confirm=confirm)
                sent = turn.sent

                def recorded() -> None:
                    if not turn.left.is_set():
                        left.append(time.monotonic())
                    sent()

                turn.sent = recorded  # type: ignore[method-assign]
                return turn

        ripe = ripe_registry(corpus_dir)
        await start(ripe)
        ripe.server.latency = 0.3  # seconds before every answer
        ctx = make_ctx(str(write_bootstrap(tmp_path / "boot", [ripe])), limiter=Recording(1000.0))
        began = time.monotonic()
        await RDAPClient(ctx).get(f"{ripe.base_url}ip/{RIPE_IP}")
        answered = time.monotonic()
        assert answered - began >= 0.3 and len(left) == 1
        assert left[0] < answered - 0.25  # when it was written, long before the answer

    async def test_a_turn_is_taken_with_a_connection_free(
        self, corpus_dir: Path, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """With one connection a host, the second request takes its turn once the first is
        answered, not before (it would queue for the connection and leave with others)."""
        events: list[str] = []

        class Recording(net.RateLimiter):
            async def wait(self, key: str, *, confirm: bool = False) -> net.Turn:
                events.append("turn")
                return await super().wait(key, confirm=confirm)

        ripe = ripe_registry(corpus_dir)
        await start(ripe)
        ctx = make_ctx(str(write_bootstrap(tmp_path / "boot", [ripe])), limiter=Recording(1000.0))
        http = ctx.settings.http.model_copy(update={"connections_per_host": 1})
        ctx.settings = ctx.settings.model_copy(update={"http": http})
        client = RDAPClient(ctx)

        async def get() -> None:
            await client.get(f"{ripe.base_url}ip/{RIPE_IP}")
            events.append("answered")

        await asyncio.gather(get(), get())
        assert events == ["turn", "answered", "turn", "answered"]

    async def test_redirect_recorded(
        self, corpus_dir: Path, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """ARIN's redirect to RIPE is followed, and the hop is in the notes and the evidence."""
        ripe = ripe_registry(corpus_dir)
        arin = RDAPRegistry("ARIN", blocks=["62.0.0.0/8"])
        arin.redirect(ripe, "62.0.0.0/8")
        await start(arin, ripe)
        ctx = make_ctx(str(write_bootstrap(tmp_path / "boot", [arin])))
        report = await lookup(query(RIPE_IP), ctx)
        assert "zzdnsr@bt.com" in [c.address for c in report.contacts]
        hop = f"RDAP redirect: {arin.base_url}ip/{RIPE_IP} -> {ripe.base_url}ip/{RIPE_IP}"
        assert hop in report.notes
        assert report.evidence[0].locator == f"{ripe.base_url}ip/{RIPE_IP}"
        assert arin.base_url in report.evidence[0].detail
        assert arin.counts["redirect:62.0.0.0/8"] == 1

    async def test_https_not_downgraded(
        self, corpus_dir: Path, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """A redirect from an HTTPS registry to plain HTTP is refused."""
        ca = SandboxCA()
        plain = ripe_registry(corpus_dir)
        secure = RDAPRegistry("ARIN", blocks=["62.0.0.0/8"], ca=ca)
        secure.redirect(plain)
        await start(secure, plain)
        ctx = make_ctx(
            str(write_bootstrap(tmp_path / "boot", [secure])),
            ca_bundle=str(ca.pem_path(tmp_path / "ca")),
        )
        with pytest.raises(SourceProtocolError):
            await lookup(query(RIPE_IP), ctx)
        assert plain.request_count == 0

    async def test_malformed_json(
        self, corpus_dir: Path, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """A truncated JSON answer is a SourceProtocolError."""
        registry = ripe_registry(corpus_dir)
        registry.malformed()
        await start(registry)
        ctx = make_ctx(str(write_bootstrap(tmp_path / "boot", [registry])))
        with pytest.raises(SourceProtocolError):
            await lookup(query(RIPE_IP), ctx)

    async def test_wrong_object_class_served(
        self, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """An entity object served for an ip query is a SourceProtocolError."""
        registry = RDAPRegistry(networks={"62.239.0.0/16": entity_json("X", ["abuse"])})
        await start(registry)
        ctx = make_ctx(str(write_bootstrap(tmp_path / "boot", [registry])))
        with pytest.raises(SourceProtocolError, match="not an ip network"):
            await lookup(query(RIPE_IP), ctx)

    async def test_huge_answer_capped(
        self, corpus_dir: Path, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """An answer over rdap.max_bytes is refused without being read whole."""
        registry = ripe_registry(corpus_dir)
        registry.huge(50_000_000)
        await start(registry)
        ctx = make_ctx(str(write_bootstrap(tmp_path / "boot", [registry])), max_bytes=65_536)
        with pytest.raises(SourceProtocolError, match="cap"):
            await lookup(query(RIPE_IP), ctx)

    async def test_slow_drip_bounded(
        self, corpus_dir: Path, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """A server dripping its answer cannot hold the lookup past rdap.timeout."""
        registry = ripe_registry(corpus_dir)
        registry.slow(0.05)
        await start(registry)
        ctx = make_ctx(str(write_bootstrap(tmp_path / "boot", [registry])), timeout=0.3)
        began = time.monotonic()
        with pytest.raises(SourceTimeout):
            await lookup(query(RIPE_IP), ctx)
        assert time.monotonic() - began < 1.5

    async def test_crlf_over_the_wire(
        self, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """A CRLF-injected e-mail served by a registry never becomes a contact."""
        data = network_json(
            "62.239.0.0/16",
            "N1",
            abuse_email=["abuse@isp.example\r\nBcc: victim@else.example", "noc@isp.example"],
        )
        registry = RDAPRegistry(networks={"62.239.0.0/16": data})
        await start(registry)
        ctx = make_ctx(str(write_bootstrap(tmp_path / "boot", [registry])))
        report = await lookup(query(RIPE_IP), ctx)
        assert [c.address for c in report.contacts] == ["noc@isp.example"]
        assert any("control characters" in n for n in report.notes)

    async def test_deep_answer(self, tmp_path: Path, make_ctx: CtxFactory, start: Starter) -> None:
        """A served answer nested far past the bound is walked only to the bound."""
        data = network_json("62.239.0.0/16", "N1", abuse_email="abuse@isp.example")
        deep: dict[str, Any] = entity_json("DEEP", ["abuse"], emails=["deep@isp.example"])
        for level in range(200):
            deep = {"handle": f"L{level}", "entities": [deep]}
        data["entities"].append(deep)
        registry = RDAPRegistry(networks={"62.239.0.0/16": data})
        await start(registry)
        ctx = make_ctx(str(write_bootstrap(tmp_path / "boot", [registry])))
        report = await lookup(query(RIPE_IP), ctx)
        assert [c.address for c in report.contacts] == ["abuse@isp.example"]

    async def test_abbreviated_abuse_entity(
        self, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """An abuse entity given only by handle is fetched as entity/<handle> from that server."""
        data = network_json("62.239.0.0/16", "N1")
        data["entities"] = [{"objectClassName": "entity", "handle": "AB9-RIPE", "roles": ["abuse"]}]
        full = entity_json("AB9-RIPE", ["abuse"], emails=["abuse@isp.example"])
        registry = RDAPRegistry(networks={"62.239.0.0/16": data}, entities={"AB9-RIPE": full})
        await start(registry)
        ctx = make_ctx(str(write_bootstrap(tmp_path / "boot", [registry])))
        report = await lookup(query(RIPE_IP), ctx)
        assert [(c.address, c.confidence) for c in report.contacts] == [("abuse@isp.example", 0.9)]
        assert [r.path for r in registry.requests] == [f"/ip/{RIPE_IP}", "/entity/AB9-RIPE"]
        assert len(report.evidence) == 2

    async def test_ssrf_refused(
        self, corpus_dir: Path, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """An RDAP base URL on loopback is refused when http.allow_private is false."""
        registry = ripe_registry(corpus_dir)
        await start(registry)
        ctx = make_ctx(str(write_bootstrap(tmp_path / "boot", [registry])), allow_private=False)
        with pytest.raises(SourceUnavailable, match="non-public"):
            await lookup(query(RIPE_IP), ctx)
        assert registry.request_count == 0
