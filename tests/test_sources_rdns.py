"""Reverse DNS against a real nameserver on loopback: PTR, forward confirmation, generic names."""

from __future__ import annotations

import ipaddress
import random
import re
import time

import dns.resolver
import pytest
from publicsuffixlist import PublicSuffixList

from notifier.config import Settings
from notifier.errors import SourceTimeout, SourceUnavailable
from notifier.models import Target
from notifier.net import make_resolver
from notifier.sandbox.dns import DNSServer
from notifier.sources import LookupContext, Query
from notifier.sources.rdns import (
    clean_hostname,
    is_generic_hosting_name,
    lookup,
    psl,
    registrable_domain,
)


def query(ip: str) -> Query:
    return Query(Target(ipaddress.ip_address(ip)))


class TestForwardConfirmation:
    async def test_confirmed_name_is_reported(
        self, dns_server: DNSServer, ctx: LookupContext
    ) -> None:
        """A PTR name whose A record holds the address is reported as a host name."""
        dns_server.add_host("db.acme.example", "127.0.0.2")
        report = await lookup(query("127.0.0.2"), ctx)
        assert report.source == "rdns"
        assert report.hostnames == ["db.acme.example"]
        assert report.error is None
        assert not any("generic" in note for note in report.notes)
        [evidence] = report.evidence
        assert evidence.locator == "PTR 2.0.0.127.in-addr.arpa."
        assert len(evidence.sha256) == 64 and "db.acme.example" in evidence.detail

    async def test_unconfirmed_name_is_a_note(
        self, dns_server: DNSServer, ctx: LookupContext
    ) -> None:
        """A PTR name whose A record points elsewhere is noted and not used."""
        dns_server.add_ptr("127.0.0.2", "www.bank.example")
        dns_server.add("www.bank.example", "A", "127.0.0.99")
        report = await lookup(query("127.0.0.2"), ctx)
        assert report.hostnames == []
        [note] = report.notes
        assert "www.bank.example is not forward-confirmed" in note
        assert "127.0.0.99" in note

    async def test_name_without_address_is_a_note(
        self, dns_server: DNSServer, ctx: LookupContext
    ) -> None:
        """A PTR name that does not exist forward is not confirmed."""
        dns_server.add_ptr("127.0.0.2", "ghost.acme.example")
        report = await lookup(query("127.0.0.2"), ctx)
        assert report.hostnames == []
        assert "does not exist" in report.notes[0]

    async def test_each_ptr_name_is_checked(
        self, dns_server: DNSServer, ctx: LookupContext
    ) -> None:
        """With several PTR names, only the confirmed ones are kept."""
        dns_server.add_host("db.acme.example", "127.0.0.2")
        dns_server.add_ptr("127.0.0.2", "spoof.victim.example")
        dns_server.add("spoof.victim.example", "A", "127.0.0.50")
        report = await lookup(query("127.0.0.2"), ctx)
        assert report.hostnames == ["db.acme.example"]
        assert any("spoof.victim.example is not forward-confirmed" in n for n in report.notes)

    async def test_ipv6_uses_ip6_arpa_and_aaaa(
        self, dns_server: DNSServer, ctx: LookupContext
    ) -> None:
        """An IPv6 target is looked up under ip6.arpa and confirmed through AAAA."""
        dns_server.add_host("v6.acme.example", "::1")
        report = await lookup(query("::1"), ctx)
        assert report.hostnames == ["v6.acme.example"]
        asked = [(q.name, q.rtype) for q in dns_server.queries]
        assert (ipaddress.ip_address("::1").reverse_pointer, "PTR") in asked
        assert ("v6.acme.example", "AAAA") in asked

    async def test_forward_timeout_leaves_name_unconfirmed(
        self, dns_server: DNSServer, ctx: LookupContext
    ) -> None:
        """A forward lookup that times out does not confirm the name."""
        dns_server.add_host("slow.acme.example", "127.0.0.2")
        dns_server.misbehave("slow.acme.example", drop=True)
        report = await lookup(query("127.0.0.2"), ctx)
        assert report.hostnames == []
        assert "timed out" in report.notes[0]

    async def test_malformed_ptr_target_is_ignored(
        self, dns_server: DNSServer, ctx: LookupContext
    ) -> None:
        """A PTR target that is not a host name is dropped with a cleaned note."""
        dns_server.add_ptr("127.0.0.2", "bad name!.acme.example")
        report = await lookup(query("127.0.0.2"), ctx)
        assert report.hostnames == []
        assert "not a host name" in report.notes[0]
        assert "\n" not in report.notes[0]


class TestEmptyAndFailing:
    async def test_no_ptr_is_an_empty_report(self, ctx: LookupContext) -> None:
        """NXDOMAIN on the reverse name is nothing to say, not an error."""
        report = await lookup(query("127.0.0.7"), ctx)
        assert report.hostnames == [] and report.contacts == [] and report.error is None
        assert report.notes == ["no PTR record for 127.0.0.7"]

    async def test_reverse_name_without_ptr_is_empty(
        self, dns_server: DNSServer, ctx: LookupContext
    ) -> None:
        """A reverse name holding other records but no PTR (NoAnswer) is an empty report."""
        dns_server.add(ipaddress.ip_address("127.0.0.8").reverse_pointer, "TXT", "hello")
        report = await lookup(query("127.0.0.8"), ctx)
        assert report.hostnames == [] and report.error is None

    async def test_timeout_raises_source_timeout(
        self, dns_server: DNSServer, ctx: LookupContext
    ) -> None:
        """A nameserver that never answers gives SourceTimeout within the DNS timeout."""
        dns_server.misbehave("127.0.0.2", drop=True)
        started = time.monotonic()
        with pytest.raises(SourceTimeout) as caught:
            await lookup(query("127.0.0.2"), ctx)
        assert time.monotonic() - started < 2
        assert caught.value.source == "rdns" and caught.value.target == "127.0.0.2"
        assert isinstance(caught.value, TimeoutError)
        assert "limit ([dns] timeout)" in str(caught.value)  # the message names the limit

    async def test_servfail_raises_unavailable(
        self, dns_server: DNSServer, ctx: LookupContext
    ) -> None:
        """SERVFAIL on the reverse name is SourceUnavailable."""
        dns_server.misbehave("127.0.0.2", servfail=True)
        with pytest.raises(SourceUnavailable):
            await lookup(query("127.0.0.2"), ctx)

    async def test_slow_answer_within_timeout_is_used(
        self, dns_server: DNSServer, ctx: LookupContext
    ) -> None:
        """A late answer that still arrives within the timeout is used."""
        dns_server.add_host("db.acme.example", "127.0.0.2")
        dns_server.misbehave("127.0.0.2", delay=0.05)
        report = await lookup(query("127.0.0.2"), ctx)
        assert report.hostnames == ["db.acme.example"]


class TestGenericNames:
    async def test_generic_name_is_noted(self, dns_server: DNSServer, ctx: LookupContext) -> None:
        """A confirmed pool name is kept, noting that its domain is the provider's."""
        name = "static-127-0-0-2.dsl.isp.example"
        dns_server.add_host(name, "127.0.0.2")
        report = await lookup(query("127.0.0.2"), ctx)
        assert report.hostnames == [name]
        assert any("generic hosting name" in n and "isp.example" in n for n in report.notes)

    @pytest.mark.parametrize(
        "name",
        [
            "ec2-3-1-2-3.us-west-2.compute.amazonaws.com",
            "123.45.67.89.bc.googleusercontent.com",
            "li123-45.members.linode.com",
            "45.76.1.2.vultrusercontent.com",
            "ns123.ip-51-68-1.eu",
            "vps-1a2b3c.vps.ovh.net",
            "static.88.99.1.2.clients.your-server.de",
            "pool-71-1-2-3.nycmny.fios.verizon.net",
            "c-73-22-1-5.hsd1.ca.comcast.net",
            "dynamic.isp.co.uk",
            "adsl.example.net",
            "cable-modem.isp.example",
            "host-5-6-7-8.isp.example",
            "ip-10-0-0-1.isp.example",
            "server7.customer.isp.example",
        ],
    )
    def test_generic_names(self, name: str) -> None:
        """Cloud, hosting and ISP pool names are generic."""
        assert is_generic_hosting_name(name)

    @pytest.mark.parametrize(
        "name",
        [
            "db.acme.example",
            "www.example.com",
            "mail.google.com",
            "dynamo.example.com",
            "example.org",
        ],
    )
    def test_owner_names(self, name: str) -> None:
        """Names an owner chose are not generic."""
        assert not is_generic_hosting_name(name)

    def test_name_spelling_the_target_address(self) -> None:
        """A name holding the target's address in any usual spelling is generic."""
        ip = ipaddress.ip_address("10.1.2.3")
        assert is_generic_hosting_name("node-0a010203.acme.example", ip)
        assert is_generic_hosting_name("srv010001002003.acme.example", ip)
        assert not is_generic_hosting_name("node-0a010203.acme.example")
        v6 = ipaddress.ip_address("2001:db8::1")
        assert is_generic_hosting_name("2001-db8--1.acme.example", v6)

    def test_garbage_is_not_generic(self) -> None:
        """Something that is not a host name is not called generic."""
        assert not is_generic_hosting_name("not a name")
        assert not is_generic_hosting_name("127.0.0.1")


class TestRegistrableDomain:
    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("db.acme.example", "acme.example"),
            ("www.example.co.uk", "example.co.uk"),
            ("Example.ORG.", "example.org"),
            ("a.b.c.example.com", "example.com"),
            ("app.herokuapp.com", "app.herokuapp.com"),
            ("www.bücher.de", "xn--bcher-kva.de"),
            ("co.uk", None),
            ("com", None),
            ("127.0.0.1", None),
            ("[::1]", None),
            ("not a name", None),
            ("", None),
        ],
    )
    def test_registrable_domain(self, name: str, expected: str | None) -> None:
        """The registrable domain comes from the shipped Public Suffix List."""
        assert registrable_domain(name) == expected

    @pytest.mark.parametrize("only_icann", [False, True])
    def test_the_list_read_as_the_library_reads_it(self, only_icann: bool) -> None:
        """The rules read once with their A-labels beside them (``psl``) are exactly those the
        library's own parser finds, private suffixes and internationalised rules included."""
        ours = psl(only_icann=only_icann)
        theirs = PublicSuffixList(only_icann=only_icann)
        assert ours.publicsuffix("x.xn--55qx5d.cn") == theirs.publicsuffix("x.xn--55qx5d.cn")
        assert ours.privatesuffix("a.b.blogspot.com") == theirs.privatesuffix("a.b.blogspot.com")
        # the parsed rules themselves: nothing else tells two readings apart
        assert ours._publicsuffix == theirs._publicsuffix
        assert ours._maxlabel == theirs._maxlabel

    def test_clean_hostname(self) -> None:
        """Host names are lower-cased A-labels without the final dot; junk is refused."""
        assert clean_hostname("WWW.Example.COM.") == "www.example.com"
        assert clean_hostname("-bad.example") is None
        assert clean_hostname("a" * 64 + ".example") is None
        assert clean_hostname("x.123") is None
        assert clean_hostname("localhost") is None


class TestSandboxNameserver:
    async def test_records_from_a_zone_description(self) -> None:
        """A zone given as a dict is served: MX (null MX too), TXT and CNAME chains."""
        zone = {
            "acme.example": {"MX": ["10 mail.acme.example"], "TXT": "v=spf1 -all"},
            "mute.example": {"MX": "0 ."},
            "www.acme.example": {"CNAME": "db.acme.example"},
            "db.acme.example": {"A": "127.0.0.2"},
        }
        async with DNSServer(zone) as server:
            settings = Settings.from_mapping({"dns": {"nameservers": [server.nameserver]}})
            resolver = make_resolver(settings.dns)
            mx = await resolver.resolve("acme.example", "MX")
            assert [r.to_text() for r in mx] == ["10 mail.acme.example."]
            assert [r.to_text() for r in await resolver.resolve("mute.example", "MX")] == ["0 ."]
            txt = await resolver.resolve("acme.example", "TXT")
            assert [r.to_text() for r in txt] == ['"v=spf1 -all"']
            www = await resolver.resolve("www.acme.example", "A")
            assert [r.to_text() for r in www] == ["127.0.0.2"]
            assert server.nameserver == f"127.0.0.1:{server.port}"

    async def test_unknown_names_are_nxdomain(
        self, dns_server: DNSServer, ctx: LookupContext
    ) -> None:
        """Unknown names are NXDOMAIN; parents of known names exist without data."""
        dns_server.add_host("db.acme.example", "127.0.0.2")
        with pytest.raises(dns.resolver.NXDOMAIN):
            await ctx.resolver.resolve("nope.acme.example", "A")
        with pytest.raises(dns.resolver.NoAnswer):
            await ctx.resolver.resolve("acme.example", "A")
        outcomes = {(q.name, q.outcome) for q in dns_server.queries}
        assert ("nope.acme.example", "NXDOMAIN") in outcomes

    async def test_large_answers_move_to_tcp(
        self, dns_server: DNSServer, ctx: LookupContext
    ) -> None:
        """An answer too big for UDP is truncated there and served whole over TCP."""
        for index in range(20):
            dns_server.add("big.acme.example", "TXT", f"{index:02d}" + "x" * 200)
        answer = await ctx.resolver.resolve("big.acme.example", "TXT")
        assert len(answer) == 20
        log = [(q.transport, q.outcome) for q in dns_server.queries]
        assert log == [("udp", "truncated"), ("tcp", "NOERROR")]

    async def test_stop_and_restart(self) -> None:
        """A stopped server has no port; started again, it answers again."""
        server = DNSServer({"a.example": {"A": "127.0.0.1"}})
        await server.start()
        await server.stop()
        with pytest.raises(RuntimeError):
            server.port  # noqa: B018 - the property raises when the server is not running
        async with server:
            settings = Settings.from_mapping({"dns": {"nameservers": [server.nameserver]}})
            answer = await make_resolver(settings.dns).resolve("a.example", "A")
            assert [r.to_text() for r in answer] == ["127.0.0.1"]


def _clean_hostname_before(name: str) -> str | None:
    """clean_hostname as written before its shortcuts for ASCII names and non-literals."""
    value = name.strip().rstrip(".")
    if not value or len(value) > 253:
        return None
    try:
        ipaddress.ip_address(value.strip("[]"))
        return None
    except ValueError:
        pass
    try:
        value = value.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    labels = value.split(".")
    if len(labels) < 2 or not all(re.match(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$", x) for x in labels):
        return None
    if labels[-1].isdigit():
        return None
    return value


def test_clean_hostname_shortcuts_change_nothing() -> None:
    pieces = ["a", "Host", "ip-10-0-0-1", "xn--bcher-kva", "bücher", "1", "255", "0x7f", "-a",
              "a-", "_dmarc", "x" * 63, "y" * 64, "", " ", "[", "]", "::1", "fe80::1%eth0",
              "2001:db8::", "\n", "ÿ", "EXAMPLE", "co", "uk", "1.2.3.4"]  # fmt: skip
    rng = random.Random(5)
    for _ in range(20000):
        name = (
            rng.choice(["", "[", " "])
            + ".".join(rng.choice(pieces) for _ in range(rng.randrange(1, 5)))
            + rng.choice(["", ".", "]", " "])
        )
        assert clean_hostname(name) == _clean_hostname_before(name), repr(name)
