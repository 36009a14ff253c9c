"""Domain RDAP: registrar abuse desks, redacted registrants, and the ccTLD WHOIS fallback."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from notifier import net
from notifier.config import Settings
from notifier.errors import SourceProtocolError, SourceUnavailable
from notifier.models import Role, Target
from notifier.sandbox.rdap import RDAPRegistry, domain_json, entity_json, write_bootstrap
from notifier.sandbox.web import SandboxCA
from notifier.sources import LookupContext, Query
from notifier.sources.domain_rdap import (
    lookup,
    parse_domain_rdap,
    parse_domain_whois,
    registrable_domain,
    registrable_domains,
    registrant_redacted,
    whois_server,
)
from notifier.sources.rdap import clear_bootstrap_cache

TARGET_IP = "62.239.237.1"
DOMAIN = "acme-widgets.com"


def query(*hostnames: str) -> Query:
    return Query(target=Target(ip=ipaddress.ip_address(TARGET_IP)), hostnames=hostnames)


class WhoisPeer:
    """A port-43 server on loopback: reads one query line, answers, closes."""

    def __init__(self, answers: dict[str, bytes]) -> None:
        self.answers = answers
        self.queries: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 2)
            self.queries.append(line)
            name = line.decode("ascii", "replace").strip().lower()
            writer.write(self.answers.get(name, b"% No match\r\n"))
            await writer.drain()
        finally:
            writer.close()


CtxFactory = Callable[..., LookupContext]
Starter = Callable[..., Awaitable[None]]


@pytest.fixture(autouse=True)
def _fresh_bootstrap() -> None:
    clear_bootstrap_cache()


@pytest.fixture
async def make_ctx() -> AsyncIterator[CtxFactory]:
    clients: list[Any] = []

    def factory(
        bootstrap: str, *, whois: dict[str, str] | None = None, ca_bundle: str = "", **rdap: Any
    ) -> LookupContext:
        settings = Settings.from_mapping(
            {
                "dns": {"nameservers": ["127.0.0.1:9"], "timeout": 0.5},
                "rdap": {"bootstrap": bootstrap, "timeout": 2, "max_retry_after": 0, **rdap},
                "whois": {"servers": whois or {}, "timeout": 1},
                "http": {"allow_private": True, "ca_bundle": ca_bundle},
            }
        )
        resolver = net.make_resolver(settings.dns)
        http = net.make_http_client(settings.http, resolver, user_agent="notifier-tests")
        clients.append(http)
        return LookupContext(
            settings=settings, resolver=resolver, http=http, limiter=net.RateLimiter(1000.0)
        )

    yield factory
    for client in clients:
        await client.aclose()


@pytest.fixture
async def start() -> AsyncIterator[Starter]:
    running: list[RDAPRegistry | WhoisPeer] = []

    async def starter(*peers: RDAPRegistry | WhoisPeer) -> None:
        for peer in peers:
            await peer.start()
            running.append(peer)

    yield starter
    for peer in running:
        await peer.stop()


class TestRegistrableDomain:
    def test_public_suffixes(self) -> None:
        """Host names reduce to the registrable domain under the public suffix list."""
        assert registrable_domain("www.shop.example.co.uk") == "example.co.uk"
        assert registrable_domain("Mail.ACME-Widgets.com.") == DOMAIN
        assert registrable_domain("co.uk") is None
        assert registrable_domain("62.239.237.1") is None
        assert registrable_domain("localhost") is None
        assert registrable_domain("bad name.com") is None

    def test_idn(self) -> None:
        """Internationalised names are looked up as A-labels."""
        assert registrable_domain("www.bücher.de") == "xn--bcher-kva.de"

    def test_dedupe_and_cap(self) -> None:
        """Several names of one domain give one lookup; the count is capped."""
        names = ["a.acme-widgets.com", "b.acme-widgets.com"] + [f"h.d{i}.com" for i in range(9)]
        found = registrable_domains(names, limit=3)
        assert found == [DOMAIN, "d0.com", "d1.com"]


class TestParseDomain:
    def test_registrar_abuse(self) -> None:
        """The registrar's nested abuse entity is a REGISTRAR contact at 0.5."""
        data = domain_json(
            DOMAIN, registrar="Sandbox Registrar", registrar_abuse_email="abuse@reg.example"
        )
        record = parse_domain_rdap(data, DOMAIN, server="rdap.registry.example")
        assert record.registrar == "Sandbox Registrar"
        [contact] = record.contacts
        assert (contact.address, contact.role, contact.confidence) == (
            "abuse@reg.example",
            Role.REGISTRAR,
            0.5,
        )
        assert "rdap.registry.example" in contact.provenance[0]

    def test_registrant_shown(self) -> None:
        """An unredacted registrant e-mail is an OWNER contact at 0.6."""
        data = domain_json(
            DOMAIN,
            registrar_abuse_email="abuse@reg.example",
            registrant_email="owner@acme-widgets.com",
        )
        roles = {
            c.address: (c.role, c.confidence) for c in parse_domain_rdap(data, DOMAIN).contacts
        }
        assert roles["owner@acme-widgets.com"] == (Role.OWNER, 0.6)

    def test_registrant_redacted(self) -> None:
        """An RFC 9537 redaction of the registrant e-mail means no OWNER contact."""
        data = domain_json(DOMAIN, registrar_abuse_email="abuse@reg.example", redacted=True)
        assert registrant_redacted(data)
        # even if an e-mail slipped through beside the redaction marker, it is not used
        data["entities"][1]["vcardArray"][1].append(["email", {}, "text", "leak@acme-widgets.com"])
        record = parse_domain_rdap(data, DOMAIN)
        assert [c.address for c in record.contacts] == ["abuse@reg.example"]
        assert record.registrant_redacted
        assert any("redacted" in n for n in record.notes)

    def test_redacted_strings(self) -> None:
        """ "REDACTED" placeholders in the registrant's card are never contacts."""
        data = domain_json(DOMAIN, registrant_email="REDACTED FOR PRIVACY")
        record = parse_domain_rdap(data, DOMAIN)
        assert record.contacts == ()
        data = domain_json(DOMAIN, registrant_email="owner@acme-widgets.com")
        data["entities"][1]["vcardArray"][1][1][3] = "REDACTED FOR PRIVACY"
        assert parse_domain_rdap(data, DOMAIN).contacts == ()

    def test_wrong_object(self) -> None:
        """An ip network answer to a domain query is a protocol error."""
        with pytest.raises(SourceProtocolError):
            parse_domain_rdap({"objectClassName": "ip network"}, DOMAIN)

    def test_related_link(self) -> None:
        """The related link to the registrar's RDAP answer is kept; other links are not."""
        related = "https://rdap.registrar.example/domain/acme-widgets.com"
        data = domain_json(DOMAIN, related=related)
        data["links"].append({"rel": "related", "href": "https://registrar.example/whois"})
        data["links"].append({"rel": "related", "href": "javascript:alert(1)/domain/x"})
        assert parse_domain_rdap(data, DOMAIN).related == (related,)

    def test_whois_text(self) -> None:
        """Port-43 text is parsed by python-whois; placeholders and junk are dropped."""
        text = (
            "Domain: acme.de\nStatus: connect\n"
            "Email: hostmaster@acme.de\n"
            "Email: abuse@example.com\n"
        )
        contacts, notes = parse_domain_whois("acme.de", text, server="whois.denic.de")
        assert [(c.address, c.role, c.sources) for c in contacts] == [
            ("hostmaster@acme.de", Role.REGISTRAR, ("domain-whois",))
        ]
        assert any("abuse@example.com" in n for n in notes)

    def test_whois_server_names(self) -> None:
        """The TLD server is whois.nic.<tld> unless known or configured by TLD."""
        assert whois_server("fr", {}) == ("whois.nic.fr", "whois.nic.fr")
        assert whois_server("de", {}) == ("whois.denic.de", "whois.denic.de")
        assert whois_server("de", {"de": "127.0.0.1:4343"}) == ("whois.denic.de", "de")
        assert whois_server("io", {".io": "127.0.0.1:4343"}) == ("whois.nic.io", ".io")


class TestLookup:
    async def test_registrar_abuse_found(
        self, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """The registry's answer gives the registrar abuse desk; evidence is recorded."""
        registry = RDAPRegistry("Sandbox TLD", tlds=["com"])
        registry.add_domain(DOMAIN, domain_json(DOMAIN, registrar_abuse_email="abuse@reg.example"))
        await start(registry)
        ctx = make_ctx(str(write_bootstrap(tmp_path / "boot", [registry])))
        report = await lookup(query(f"www.{DOMAIN}", f"mail.{DOMAIN}"), ctx)
        assert [(c.address, c.role) for c in report.contacts] == [
            ("abuse@reg.example", Role.REGISTRAR)
        ]
        assert report.source == "domain-rdap"
        assert [r.path for r in registry.requests] == [f"/domain/{DOMAIN}"]
        assert len(report.evidence) == 1

    async def test_related_followed_once(
        self, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """The related registrar server is asked once; the same abuse address is merged."""
        ca = SandboxCA()
        registrar = RDAPRegistry("Sandbox Registrar", ca=ca)
        registry = RDAPRegistry("Sandbox TLD", tlds=["com"], ca=ca)
        await start(registrar, registry)
        onward = f"{registry.base_url}domain/other.com"
        registrar.add_domain(
            DOMAIN,
            domain_json(
                DOMAIN,
                registrar_abuse_email="abuse@reg.example",
                registrant_email="owner@acme-widgets.com",
                related=onward,
            ),
        )
        registry.add_domain(
            DOMAIN,
            domain_json(
                DOMAIN,
                registrar_abuse_email="abuse@reg.example",
                redacted=True,
                related=f"{registrar.base_url}domain/{DOMAIN}",
            ),
        )
        ctx = make_ctx(
            str(write_bootstrap(tmp_path / "boot", [registry])),
            ca_bundle=str(ca.pem_path(tmp_path / "ca")),
        )
        report = await lookup(query(f"www.{DOMAIN}"), ctx)
        found = {c.address: c for c in report.contacts}
        assert set(found) == {"abuse@reg.example", "owner@acme-widgets.com"}
        assert len(found["abuse@reg.example"].provenance) == 2
        assert found["owner@acme-widgets.com"].role is Role.OWNER
        assert registrar.request_count == 1 and registry.request_count == 1
        assert len(report.evidence) == 2

    async def test_redacted_registrant_skipped(
        self, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """A redacted registrant is not contacted; the registrar abuse desk is."""
        registry = RDAPRegistry("Sandbox TLD", tlds=["com"])
        registry.add_domain(
            DOMAIN, domain_json(DOMAIN, registrar_abuse_email="abuse@reg.example", redacted=True)
        )
        await start(registry)
        ctx = make_ctx(str(write_bootstrap(tmp_path / "boot", [registry])))
        report = await lookup(query(DOMAIN), ctx)
        assert [c.role for c in report.contacts] == [Role.REGISTRAR]
        assert any("redacted" in n for n in report.notes)

    async def test_not_found(self, tmp_path: Path, make_ctx: CtxFactory, start: Starter) -> None:
        """A 404 from the registry is an empty report with a note."""
        registry = RDAPRegistry("Sandbox TLD", tlds=["com"])
        await start(registry)
        ctx = make_ctx(str(write_bootstrap(tmp_path / "boot", [registry])))
        report = await lookup(query(DOMAIN), ctx)
        assert report.contacts == []
        assert any("404" in n for n in report.notes)

    async def test_every_domain_failing_raises(
        self, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """When the only registry keeps failing the source raises SourceUnavailable."""
        registry = RDAPRegistry("Sandbox TLD", tlds=["com"])
        registry.fail(times=10, status=503)
        await start(registry)
        ctx = make_ctx(str(write_bootstrap(tmp_path / "boot", [registry])))
        with pytest.raises(SourceUnavailable) as caught:
            await lookup(query(DOMAIN), ctx)
        assert caught.value.source == "domain-rdap"
        assert registry.request_count == 3

    async def test_no_hostnames(self, make_ctx: CtxFactory) -> None:
        """A target without host names gives an empty report and asks nobody."""
        report = await lookup(query(), make_ctx(""))
        assert report.contacts == [] and report.notes

    async def test_cctld_whois_fallback(
        self, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """A TLD without RDAP in dns.json is asked over port 43, and its e-mails are cleaned."""
        answer = (
            b"Domain: acme.de\r\nStatus: connect\r\n"
            b"Email: hostmaster@acme.de\r\nEmail: removed@lacnic.net\r\n"
        )
        peer = WhoisPeer({"acme.de": answer})
        registry = RDAPRegistry("Sandbox TLD", tlds=["com"])
        await start(peer, registry)
        ctx = make_ctx(
            str(write_bootstrap(tmp_path / "boot", [registry])),
            whois={"de": f"127.0.0.1:{peer.port}"},
        )
        report = await lookup(query("www.acme.de"), ctx)
        assert [(c.address, c.sources) for c in report.contacts] == [
            ("hostmaster@acme.de", ("domain-whois",))
        ]
        assert peer.queries == [b"acme.de\r\n"]
        assert report.evidence[0].locator == "whois://whois.denic.de/acme.de"
        assert any("WHOIS" in n for n in report.notes)
        assert registry.request_count == 0

    async def test_whois_unreachable(
        self, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """A dead WHOIS server is SourceUnavailable, not a crash."""
        peer = WhoisPeer({})
        await start(peer)
        port = peer.port
        await peer.stop()
        registry = RDAPRegistry("Sandbox TLD", tlds=["com"])
        await start(registry)
        ctx = make_ctx(
            str(write_bootstrap(tmp_path / "boot", [registry])),
            whois={"de": f"127.0.0.1:{port}"},
        )
        with pytest.raises(SourceUnavailable):
            await lookup(query("acme.de"), ctx)

    async def test_one_domain_failing(
        self, tmp_path: Path, make_ctx: CtxFactory, start: Starter
    ) -> None:
        """One failing domain is a note; the other domain's contacts still come back."""
        registry = RDAPRegistry("Sandbox TLD", tlds=["com", "net"])
        registry.add_domain(DOMAIN, domain_json(DOMAIN, registrar_abuse_email="abuse@reg.example"))
        registry.add_domain("broken.net", entity_json("X", ["registrar"]))
        await start(registry)
        ctx = make_ctx(str(write_bootstrap(tmp_path / "boot", [registry])))
        report = await lookup(query("www.broken.net", DOMAIN), ctx)
        assert [c.address for c in report.contacts] == ["abuse@reg.example"]
        assert any("broken.net" in n and "not a domain" in n for n in report.notes)
