"""The national-CERT and override sources: contacts.yaml applied to a target and its network."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path

import dns.asyncresolver
import httpx
import pytest

from notifier.config import Settings
from notifier.contacts import ContactRegistry
from notifier.models import Network, Role, Target
from notifier.net import RateLimiter
from notifier.sources import LookupContext, Query, cert, overrides

USER_FILE = """\
certs:
  IN: {name: CERT-In, email: [incident@cert-in.org.in, second@cert.example.org]}
overrides:
  "62.239.237.0/24": {name: Edge SOC, email: soc@edge.example.org}
  AS15169: {name: Peering NOC, email: noc@peering.example.org}
  example.co.uk: {name: UK Security, email: security@example.co.uk}
  shop.example.org: {name: Shop, email: shop@sec.example.org}
"""


@pytest.fixture
def registry(tmp_path: Path) -> ContactRegistry:
    path = tmp_path / "contacts.yaml"
    path.write_text(USER_FILE, encoding="utf-8")
    return ContactRegistry.load(path)


@pytest.fixture
async def ctx(registry: ContactRegistry) -> AsyncIterator[LookupContext]:
    """A context whose clients are never used: both sources only read the registry."""
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    http = httpx.AsyncClient(timeout=0.1)
    yield LookupContext(
        settings=Settings(),
        resolver=resolver,
        http=http,
        limiter=RateLimiter(100),
        contacts=registry,
    )
    await http.aclose()


def query(
    ip: str,
    *,
    country: str | None = None,
    asn: int | None = None,
    hostnames: tuple[str, ...] = (),
    finding_names: tuple[str, ...] = (),
) -> Query:
    network = None
    if country is not None or asn is not None:
        network = Network(registry="ripe", country=country or "", asn=asn)
    target = Target(ipaddress.ip_address(ip), hostnames=finding_names)
    return Query(target, hostnames=hostnames, network=network)


class TestNationalCertSource:
    async def test_country_gives_the_cert(self, ctx: LookupContext) -> None:
        """The network's country picks its national CERT, every address of it."""
        report = await cert.lookup(query("117.239.12.34", country="IN"), ctx)
        assert report.source == "national-cert"
        assert [c.address for c in report.contacts] == [
            "incident@cert-in.org.in",
            "second@cert.example.org",
        ]
        assert all(c.role is Role.NATIONAL_CERT for c in report.contacts)
        assert report.contacts[0].sources == ("contacts.yaml",)
        assert report.error is None

    async def test_shipped_country(self, ctx: LookupContext) -> None:
        """A country only the shipped file knows is still found, with its confidence."""
        report = await cert.lookup(query("62.239.237.1", country="gb"), ctx)
        [contact] = report.contacts
        assert contact.address == "incidents@ncsc.gov.uk"
        assert contact.confidence == 0.6
        assert "national CERT for GB" in contact.provenance[0]

    async def test_no_network_means_nothing(self, ctx: LookupContext) -> None:
        """Without a network record there is no country and no CERT."""
        report = await cert.lookup(query("62.239.237.1"), ctx)
        assert report.contacts == []
        assert report.notes and "no country" in report.notes[0]

    async def test_empty_country_means_nothing(self, ctx: LookupContext) -> None:
        """A network record without a country gives no CERT."""
        report = await cert.lookup(query("62.239.237.1", asn=2856), ctx)
        assert report.contacts == []

    @pytest.mark.parametrize("country", ["Netherlands", "E\r\nU", "1N"])
    async def test_non_iso_country_is_noted(self, ctx: LookupContext, country: str) -> None:
        """A country that is not an ISO code is noted, cleaned, and looked up no further."""
        report = await cert.lookup(query("62.239.237.1", country=country), ctx)
        assert report.contacts == []
        assert "not an ISO 3166 code" in report.notes[0]
        assert "\r" not in report.notes[0] and "\n" not in report.notes[0]

    async def test_unknown_country_is_noted(self, ctx: LookupContext) -> None:
        """A country with no entry is noted, not guessed."""
        report = await cert.lookup(query("200.57.141.161", country="aq"), ctx)
        assert report.contacts == []
        assert report.notes == ["no national CERT known for AQ"]

    async def test_no_registry(self, ctx: LookupContext) -> None:
        """A context without a contacts registry gives an empty report."""
        ctx.contacts = None
        report = await cert.lookup(query("117.239.12.34", country="IN"), ctx)
        assert report.contacts == []


class TestOverridesSource:
    async def test_network_override(self, ctx: LookupContext) -> None:
        """The target address inside an override network gets that network's contact."""
        report = await overrides.lookup(query("62.239.237.1"), ctx)
        assert report.source == "overrides"
        [contact] = report.contacts
        assert contact.address == "soc@edge.example.org"
        assert contact.role is Role.OVERRIDE and contact.confidence == 1.0

    async def test_asn_override(self, ctx: LookupContext) -> None:
        """The network's AS number picks its override."""
        report = await overrides.lookup(query("74.125.225.229", country="US", asn=15169), ctx)
        assert [c.address for c in report.contacts] == ["noc@peering.example.org"]

    async def test_registrable_domain_of_hostname(self, ctx: LookupContext) -> None:
        """A host name is matched through its registrable domain (public suffix aware)."""
        report = await overrides.lookup(
            query("74.125.225.229", hostnames=("db.internal.example.co.uk.",)), ctx
        )
        assert [c.address for c in report.contacts] == ["security@example.co.uk"]

    async def test_subdomain_override_is_more_specific(self, ctx: LookupContext) -> None:
        """An override for a host's own subdomain is used even below the registrable domain."""
        report = await overrides.lookup(
            query("74.125.225.229", hostnames=("www.shop.example.org",)), ctx
        )
        assert [c.address for c in report.contacts] == ["shop@sec.example.org"]

    async def test_hostile_names_are_ignored(self, ctx: LookupContext) -> None:
        """Names that are not host names (IP literals, junk, public suffixes) match nothing."""
        names = ("62.239.237.1", "co.uk", "bad name\r\n.example.co.uk", "", "x" * 300)
        report = await overrides.lookup(query("74.125.225.229", hostnames=names), ctx)
        assert report.contacts == []
        assert report.error is None

    async def test_all_matches_together(self, ctx: LookupContext) -> None:
        """Network, AS number and domain overrides are all returned."""
        report = await overrides.lookup(
            query("62.239.237.1", asn=15169, hostnames=("mail.example.co.uk",)), ctx
        )
        assert {c.address for c in report.contacts} == {
            "soc@edge.example.org",
            "noc@peering.example.org",
            "security@example.co.uk",
        }

    async def test_no_override_means_empty(self, ctx: LookupContext) -> None:
        """A target nobody wrote an override for gives an empty report."""
        report = await overrides.lookup(query("196.11.240.215", asn=36924), ctx)
        assert report.contacts == [] and report.notes == []

    async def test_shipped_registry_has_no_overrides(self, ctx: LookupContext) -> None:
        """With only the shipped file loaded there is nothing to override."""
        ctx.contacts = ContactRegistry.load()
        report = await overrides.lookup(query("62.239.237.1", asn=15169), ctx)
        assert report.contacts == []

    async def test_no_registry(self, ctx: LookupContext) -> None:
        """A context without a contacts registry gives an empty report."""
        ctx.contacts = None
        report = await overrides.lookup(query("62.239.237.1"), ctx)
        assert report.contacts == []
