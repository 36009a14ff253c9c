"""The RFC 2142 role mailbox: one guess, security@, only for a domain with an MX of its own."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import AsyncIterator

import pytest

from notifier.config import Settings
from notifier.errors import SourceTimeout, SourceUnavailable
from notifier.models import Role, Target
from notifier.net import RateLimiter, make_http_client, make_resolver
from notifier.sandbox.dns import DNSServer
from notifier.sources import LookupContext, Query
from notifier.sources.ares import BulkResolver
from notifier.sources.rolemailbox import lookup, mail_exchanger


@pytest.fixture(params=["dnspython", "c-ares"])
async def ctx(
    request: pytest.FixtureRequest, dns_server: DNSServer
) -> AsyncIterator[LookupContext]:
    """Every test twice: through dnspython (``send``) and through a batch's c-ares channel."""
    settings = Settings.from_mapping(
        {"dns": {"nameservers": [dns_server.nameserver], "timeout": 0.3}}
    )
    resolver = make_resolver(settings.dns)
    http = make_http_client(settings.http, resolver, user_agent="notifier-test")
    context = LookupContext(
        settings=settings, resolver=resolver, http=http, limiter=RateLimiter(100)
    )
    if request.param == "c-ares":
        context.bulk_dns = BulkResolver(settings.dns)
    yield context
    if context.bulk_dns is not None:
        await context.bulk_dns.close()
    await http.aclose()


def query(*hostnames: str) -> Query:
    return Query(Target(ipaddress.ip_address("127.0.0.2")), hostnames=hostnames)


class TestMailExchange:
    async def test_mx(self, dns_server: DNSServer, ctx: LookupContext) -> None:
        """With an MX, one address, security@ the registrable domain, is offered at 0.3."""
        dns_server.add("acme.example", "MX", "20 backup.acme.example")
        dns_server.add("acme.example", "MX", "10 mail.acme.example")
        report = await lookup(query("db.acme.example"), ctx)
        assert [c.address for c in report.contacts] == ["security@acme.example"]
        (contact,) = report.contacts
        assert contact.role is Role.OWNER
        assert contact.sources == ("role-mailbox",)
        assert contact.confidence == 0.3
        assert contact.provenance == (
            "guessed",
            "RFC 2142 role mailbox on acme.example (MX mail.acme.example); no source published it",
        )
        assert report.source == "role-mailbox" and report.error is None

    async def test_null_mx(self, dns_server: DNSServer, ctx: LookupContext) -> None:
        """A null MX (0 .) means the domain takes no mail: nothing is guessed."""
        dns_server.add("acme.example", "MX", "0 .")
        dns_server.add("acme.example", "A", "127.0.0.3")
        report = await lookup(query("db.acme.example"), ctx)
        assert report.contacts == []
        assert report.notes == [
            "acme.example publishes a null MX (RFC 7505): it accepts no mail: "
            "no role mailbox guessed"
        ]

    async def test_no_address_fallback(self, dns_server: DNSServer, ctx: LookupContext) -> None:
        """Without an MX, an A record is not taken as the mail exchanger: no guess."""
        dns_server.add("acme.example", "A", "127.0.0.3")
        report = await lookup(query("db.acme.example"), ctx)
        assert report.contacts == []
        assert report.notes == ["acme.example has no MX record of its own: no role mailbox guessed"]

    async def test_no_aaaa_fallback(self, dns_server: DNSServer, ctx: LookupContext) -> None:
        """An AAAA record alone is no mail exchanger either."""
        dns_server.add("acme.example", "AAAA", "::1")
        how, why = await mail_exchanger(ctx, "acme.example")
        assert how is None and "no MX" in why

    async def test_no_mail_at_all(self, dns_server: DNSServer, ctx: LookupContext) -> None:
        """A domain with neither MX nor address records gets no guess."""
        dns_server.add("acme.example", "TXT", "v=spf1 -all")
        report = await lookup(query("db.acme.example"), ctx)
        assert report.contacts == []
        assert "no MX record" in report.notes[0]

    async def test_domain_that_does_not_exist(self, ctx: LookupContext) -> None:
        """A registrable domain that does not exist gets no guess."""
        report = await lookup(query("db.nowhere.example"), ctx)
        assert report.contacts == []
        assert report.notes == ["nowhere.example does not exist: no role mailbox guessed"]


class TestWhichDomains:
    async def test_one_guess_per_domain(self, dns_server: DNSServer, ctx: LookupContext) -> None:
        """Several host names in one domain give one guess, asked about once."""
        dns_server.add("acme.example", "MX", "10 mail.acme.example")
        report = await lookup(query("db.acme.example", "www.acme.example", "acme.example."), ctx)
        assert len(report.contacts) == 1
        assert [q.name for q in dns_server.queries].count("acme.example") == 1

    async def test_generic_names_are_skipped(
        self, dns_server: DNSServer, ctx: LookupContext
    ) -> None:
        """A provider's pool name gets no guess on the provider's domain, and no DNS query."""
        report = await lookup(query("static-127-0-0-2.dsl.isp.example"), ctx)
        assert report.contacts == [] and dns_server.queries == []
        assert "generic hosting name" in report.notes[0]

    async def test_no_hostnames(self, dns_server: DNSServer, ctx: LookupContext) -> None:
        """Without host names there is nothing to guess from."""
        report = await lookup(query(), ctx)
        assert report.contacts == [] and report.notes == [] and dns_server.queries == []

    async def test_ip_literal_is_not_a_domain(
        self, dns_server: DNSServer, ctx: LookupContext
    ) -> None:
        """An IP literal among the names is ignored."""
        report = await lookup(query("127.0.0.2", "[::1]"), ctx)
        assert report.contacts == [] and dns_server.queries == []


class TestFailures:
    async def test_timeout(self, dns_server: DNSServer, ctx: LookupContext) -> None:
        """A nameserver that never answers gives SourceTimeout within the DNS timeout."""
        dns_server.misbehave("acme.example", drop=True)
        started = time.monotonic()
        with pytest.raises(SourceTimeout) as caught:
            await lookup(query("db.acme.example"), ctx)
        assert time.monotonic() - started < 2
        assert caught.value.source == "role-mailbox"

    async def test_servfail(self, dns_server: DNSServer, ctx: LookupContext) -> None:
        """SERVFAIL is SourceUnavailable."""
        dns_server.misbehave("acme.example", servfail=True)
        with pytest.raises(SourceUnavailable):
            await lookup(query("db.acme.example"), ctx)

    async def test_one_failing_domain_does_not_hide_another(
        self, dns_server: DNSServer, ctx: LookupContext
    ) -> None:
        """A failure on one domain is a note when another domain gives the guess."""
        dns_server.misbehave("broken.example", servfail=True)
        dns_server.add("acme.example", "MX", "10 mail.acme.example")
        report = await lookup(query("www.broken.example", "db.acme.example"), ctx)
        assert [c.address for c in report.contacts] == ["security@acme.example"]
        assert any("broken.example" in n for n in report.notes)

    async def test_at_most_one_guess(self, dns_server: DNSServer, ctx: LookupContext) -> None:
        """Two owner domains with mail still give one guess: the first name's domain."""
        dns_server.add("acme.example", "MX", "10 mail.acme.example")
        dns_server.add("other.example", "MX", "10 mail.other.example")
        report = await lookup(query("db.acme.example", "www.other.example"), ctx)
        assert [c.address for c in report.contacts] == ["security@acme.example"]
