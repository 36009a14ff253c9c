"""security.txt: the RFC 9116 parser, and fetching over HTTPS from loopback virtual hosts."""

from __future__ import annotations

import hashlib
import ipaddress
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notifier.config import Settings
from notifier.errors import SourceProtocolError
from notifier.models import Channel, ChannelKind, Role, Target
from notifier.net import RateLimiter, make_http_client, make_resolver
from notifier.sandbox.dns import DNSServer
from notifier.sandbox.web import Reply, SandboxCA, WebServer
from notifier.sources import LookupContext, Query
from notifier.sources.securitytxt import (
    SecurityTxtError,
    lookup,
    parse_security_txt,
    security_txt_urls,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
URL = "https://db.acme.example/.well-known/security.txt"
WELL_KNOWN = "/.well-known/security.txt"

VALID = """\
# Acme's security contacts
Contact: mailto:security@acme.example
Contact: https://acme.example/report
Contact: tel:+1-201-555-0123
Expires: 2026-12-31T23:59:59Z
Encryption: https://acme.example/pgp-key.txt
Policy: https://acme.example/disclosure-policy
Preferred-Languages: en, nl
"""

SIGNED = """\
-----BEGIN PGP SIGNED MESSAGE-----
Hash: SHA512

- Contact: mailto:psirt@acme.example
Expires: 2026-12-31T23:59:59.000Z
# - dashes in a comment
- --- a dash-escaped comment line?
-----BEGIN PGP SIGNATURE-----

iQIzBAEBCgAdFiEEexample
=abcd
-----END PGP SIGNATURE-----
"""


class TestParser:
    def test_valid_file(self) -> None:
        """Every field of a valid file is read, contacts in the file's order."""
        txt = parse_security_txt(VALID, url=URL, now=NOW)
        assert txt.contacts == (
            "mailto:security@acme.example",
            "https://acme.example/report",
            "tel:+1-201-555-0123",
        )
        assert txt.expires == datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
        assert txt.encryption == ("https://acme.example/pgp-key.txt",)
        assert txt.policy == ("https://acme.example/disclosure-policy",)
        assert txt.preferred_languages == ("en", "nl")
        assert txt.errors == () and txt.valid and txt.usable and not txt.signed
        assert "not_signed" in txt.warnings

    def test_field_names_are_case_insensitive_and_crlf_is_accepted(self) -> None:
        """Field names in any case and CRLF line ends parse like the canonical form."""
        text = "CONTACT: mailto:a@acme.example\r\nexpires: 2026-12-31T00:00:00+02:00\r\n"
        txt = parse_security_txt(text, url=URL, now=NOW)
        assert txt.contacts == ("mailto:a@acme.example",)
        assert txt.expires == datetime(2026, 12, 30, 22, 0, tzinfo=UTC)
        assert txt.valid

    def test_comments_and_blank_lines_are_skipped(self) -> None:
        """Comment and blank lines are not fields and not errors."""
        text = "\n# comment\n   # indented comment\n\n" + VALID
        assert parse_security_txt(text, url=URL, now=NOW).valid

    def test_missing_contact(self) -> None:
        """A file without Contact is invalid: no_contact."""
        txt = parse_security_txt("Expires: 2026-12-31T00:00:00Z\n", url=URL, now=NOW)
        assert "no_contact" in txt.errors and not txt.usable

    def test_missing_expires(self) -> None:
        """A file without Expires is invalid: no_expire."""
        txt = parse_security_txt("Contact: mailto:a@acme.example\n", url=URL, now=NOW)
        assert txt.errors == ("no_expire",) and not txt.usable

    def test_multiple_expires(self) -> None:
        """More than one Expires is invalid: multi_expire."""
        text = VALID + "Expires: 2026-11-30T00:00:00Z\n"
        txt = parse_security_txt(text, url=URL, now=NOW)
        assert "multi_expire" in txt.errors and not txt.usable

    @pytest.mark.parametrize(
        "stamp",
        ["2026-12-31", "31 Dec 2026", "2026-12-31T23:59:59", "2026-13-01T00:00:00Z", "soon"],
    )
    def test_invalid_expiry(self, stamp: str) -> None:
        """An Expires that is not an RFC 3339 date-time with a zone is invalid_expiry."""
        text = f"Contact: mailto:a@acme.example\nExpires: {stamp}\n"
        txt = parse_security_txt(text, url=URL, now=NOW)
        assert txt.errors == ("invalid_expiry",) and txt.expires is None

    def test_expired(self) -> None:
        """An Expires in the past makes the file expired."""
        text = "Contact: mailto:a@acme.example\nExpires: 2026-01-01T00:00:00Z\n"
        txt = parse_security_txt(text, url=URL, now=NOW)
        assert txt.expired and txt.errors == ("expired",) and not txt.usable

    def test_long_expiry_is_a_warning(self) -> None:
        """An Expires more than a year ahead is only a warning."""
        text = "Contact: mailto:a@acme.example\nExpires: 2030-01-01T00:00:00Z\n"
        txt = parse_security_txt(text, url=URL, now=NOW)
        assert txt.valid and "long_expiry" in txt.warnings

    def test_preferred_languages_once(self) -> None:
        """Preferred-Languages may appear once; a repeat is multi_lang and ignored."""
        text = VALID + "Preferred-Languages: de\n"
        txt = parse_security_txt(text, url=URL, now=NOW)
        assert txt.preferred_languages == ("en", "nl") and "multi_lang" in txt.errors
        assert txt.usable

    def test_invalid_line(self) -> None:
        """A line that is not 'Field: value' is invalid_line but does not block the file."""
        txt = parse_security_txt(VALID + "this is not a field\n", url=URL, now=NOW)
        assert txt.errors == ("invalid_line",) and txt.usable

    def test_unknown_field_is_a_warning(self) -> None:
        """Fields the parser does not know are ignored with a warning."""
        txt = parse_security_txt(VALID + "X-Custom: yes\n", url=URL, now=NOW)
        assert txt.valid and "unknown_field" in txt.warnings
        assert txt.unknown_fields == (("x-custom", "yes"),)

    def test_bare_address_contact(self) -> None:
        """A Contact that is a bare address, not a URI, is kept and flagged no_uri."""
        text = "Contact: security@acme.example\nExpires: 2026-12-31T00:00:00Z\n"
        txt = parse_security_txt(text, url=URL, now=NOW)
        assert txt.contacts == ("security@acme.example",) and "no_uri" in txt.errors

    def test_canonical_match_and_mismatch(self) -> None:
        """Canonical must list the fetched URL (or an end of its redirect chain)."""
        other = "https://elsewhere.example/.well-known/security.txt"
        matching = (
            VALID + f"Canonical: {other}\nCanonical: https://DB.acme.example:443{WELL_KNOWN}\n"
        )
        assert parse_security_txt(matching, url=URL, now=NOW).valid
        mismatched = VALID + f"Canonical: {other}\n"
        txt = parse_security_txt(mismatched, url=URL, now=NOW)
        assert txt.errors == ("no_canonical_match",) and not txt.usable
        via = parse_security_txt(mismatched, url=URL, now=NOW, chain=[URL, other])
        assert via.valid

    def test_field_over_2048_characters_is_dropped(self) -> None:
        """A field longer than 2,048 characters is refused (RFC 9116 §5.4)."""
        text = VALID + "Policy: https://acme.example/" + "a" * 2100 + "\n"
        txt = parse_security_txt(text, url=URL, now=NOW)
        assert "field_too_long" in txt.errors and len(txt.policy) == 1

    def test_too_many_lines(self) -> None:
        """More than 1,000 lines is refused outright."""
        with pytest.raises(SecurityTxtError):
            parse_security_txt(VALID + "#\n" * 1000, url=URL, now=NOW)

    def test_too_many_bytes(self) -> None:
        """A body over the byte cap is refused outright."""
        with pytest.raises(SecurityTxtError):
            parse_security_txt(VALID + "# " + "é" * 600 + "\n", url=URL, now=NOW, max_bytes=1024)

    @pytest.mark.parametrize(
        "body",
        [
            "<!DOCTYPE html><html><body>Not found</body></html>",
            "\n\n  <html><head><title>404</title></head></html>",
            "<?xml version='1.0'?><error/>",
            "",
            "Page not found\n",
            "\x00\x01\x02binary",
        ],
    )
    def test_not_a_security_txt(self, body: str) -> None:
        """HTML soft-404s and bodies without any field raise SecurityTxtError."""
        with pytest.raises(SecurityTxtError) as caught:
            parse_security_txt(body, url=URL, now=NOW)
        assert isinstance(caught.value, SourceProtocolError)
        assert caught.value.source == "security.txt"

    def test_signed_file(self) -> None:
        """A cleartext-signed file is un-armoured and un-dash-escaped, and marked signed."""
        txt = parse_security_txt(SIGNED, url=URL, now=NOW)
        assert txt.signed
        assert txt.contacts == ("mailto:psirt@acme.example",)
        assert txt.expires == datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
        assert txt.usable and "no_canonical" in txt.warnings

    def test_signed_file_with_trailing_data(self) -> None:
        """Data after the signature block is data_after_sig."""
        txt = parse_security_txt(
            SIGNED + "Contact: mailto:evil@attacker.example\n", url=URL, now=NOW
        )
        assert "data_after_sig" in txt.errors
        assert txt.contacts == ("mailto:psirt@acme.example",)

    def test_signed_file_without_signature(self) -> None:
        """A signed-message armour that never reaches its signature is refused."""
        broken = SIGNED.split("-----BEGIN PGP SIGNATURE-----")[0]
        with pytest.raises(SecurityTxtError):
            parse_security_txt(broken, url=URL, now=NOW)

    def test_control_characters_drop_the_field(self) -> None:
        """A value holding control characters is refused, not repaired."""
        text = (
            "Contact: mailto:a@acme.example\rBcc: x@evil.example\nExpires: 2026-12-31T00:00:00Z\n"
        )
        txt = parse_security_txt(text, url=URL, now=NOW)
        assert txt.contacts == () and "invalid_line" in txt.errors

    def test_byte_order_mark(self) -> None:
        """A leading byte order mark is reported and skipped."""
        txt = parse_security_txt("\ufeff" + VALID, url=URL, now=NOW)
        assert txt.errors == ("bom_in_file",) and len(txt.contacts) == 3

    @settings(
        max_examples=200,
        deadline=timedelta(milliseconds=500),
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        st.one_of(
            st.text(max_size=3000),
            st.lists(
                st.one_of(
                    st.sampled_from(
                        [
                            "Contact: mailto:a@acme.example",
                            "Expires: 2026-12-31T00:00:00Z",
                            "Canonical: https://x.example/",
                            "Preferred-Languages: en",
                            "-----BEGIN PGP SIGNED MESSAGE-----",
                            "-----BEGIN PGP SIGNATURE-----",
                            "-----END PGP SIGNATURE-----",
                            "Hash: SHA256",
                            "- Contact: mailto:b@acme.example",
                            "<html>",
                            "",
                            "#",
                        ]
                    ),
                    st.text(max_size=80),
                ),
                max_size=60,
            ).map("\n".join),
        )
    )
    def test_never_raises_anything_else(self, text: str) -> None:
        """On arbitrary text the parser returns or raises SecurityTxtError, quickly."""
        started = time.monotonic()
        try:
            parse_security_txt(text, url=URL, now=NOW, chain=[URL])
        except SecurityTxtError:
            pass
        assert time.monotonic() - started < 0.5


# -- fetching over HTTPS -------------------------------------------------------------------------

HOSTS = {
    "db.acme.example": "127.0.0.2",
    "acme.example": "127.0.0.3",
    "other.example": "127.0.0.4",
    "ec2-127-0-0-5.compute.amazonaws.com": "127.0.0.5",
}


@dataclass
class Sandbox:
    web: WebServer
    dns: DNSServer
    ctx: LookupContext

    def serve(
        self, host: str, body: str | bytes, *, path: str = WELL_KNOWN, **headers: str
    ) -> None:
        raw = body.encode() if isinstance(body, str) else body
        all_headers = {"Content-Type": "text/plain; charset=utf-8", **headers}
        self.web.route(path, Reply(200, raw, all_headers), host=host)

    def url(self, host: str, path: str = WELL_KNOWN) -> str:
        return f"https://{host}:{self.web.port}{path}"


@pytest.fixture
async def sandbox(ca: SandboxCA, ca_pem: Path) -> AsyncIterator[Sandbox]:
    dns = DNSServer()
    for name, ip in HOSTS.items():
        dns.add_host(name, ip)
    web = WebServer(ca=ca, hostnames=list(HOSTS), bind=sorted(set(HOSTS.values())))
    await dns.start()
    await web.start()
    settings = Settings.from_mapping(
        {
            "dns": {"nameservers": [dns.nameserver], "timeout": 0.5},
            "http": {
                "ca_bundle": str(ca_pem),
                "https_port": web.port,
                "allow_private": True,
                "timeout": 1.0,
            },
        }
    )
    resolver = make_resolver(settings.dns)
    http = make_http_client(settings.http, resolver, user_agent="notifier-test")
    ctx = LookupContext(
        settings=settings,
        resolver=resolver,
        http=http,
        limiter=RateLimiter(100),
        clock=lambda: NOW,
    )
    try:
        yield Sandbox(web, dns, ctx)
    finally:
        await http.aclose()
        await web.stop()
        await dns.stop()


def db_query(*names: str) -> Query:
    return Query(Target(ipaddress.ip_address("127.0.0.2")), hostnames=names or ("db.acme.example",))


class TestLookup:
    async def test_valid_file_on_the_exact_host(self, sandbox: Sandbox) -> None:
        """A valid file on the host itself gives its mailto: contacts at 0.9, the other Contacts
        as channels (a web form, a phone number) with where they were found."""
        sandbox.serve("db.acme.example", VALID)
        report = await lookup(db_query(), sandbox.ctx)
        [contact] = report.contacts
        assert contact.address == "security@acme.example"
        assert contact.role is Role.OWNER and contact.sources == ("security.txt",)
        assert contact.confidence == 0.9
        assert contact.provenance[0] == (
            f"security.txt at {sandbox.url('db.acme.example')}, Contact #1 of 3"
        )
        where = f"security.txt at {sandbox.url('db.acme.example')}"
        assert report.channels == [
            Channel(
                ChannelKind.WEB,
                "https://acme.example/report",
                Role.OWNER,
                "security.txt",
                (f"{where}, Contact #2 of 3",),
                ("en", "nl"),
            ),
            Channel(
                ChannelKind.PHONE,
                "tel:+1-201-555-0123",
                Role.OWNER,
                "security.txt",
                (f"{where}, Contact #3 of 3",),
                ("en", "nl"),
            ),
        ]
        assert report.answered == ["db.acme.example"]
        notes = report.notes
        assert "policy: https://acme.example/disclosure-policy" in notes
        assert "preferred languages: en, nl" in notes
        assert "encryption key: https://acme.example/pgp-key.txt" in notes
        evidence = [e for e in report.evidence if e.locator == sandbox.url("db.acme.example")]
        assert evidence[0].sha256 == hashlib.sha256(VALID.encode()).hexdigest()
        assert evidence[0].fetched_at == NOW
        assert report.error is None

    async def test_parent_domain_inference(self, sandbox: Sandbox) -> None:
        """The registrable domain's file is used at 0.6 and labelled a parent-domain inference."""
        sandbox.serve("acme.example", VALID)
        report = await lookup(db_query(), sandbox.ctx)
        [contact] = report.contacts
        assert contact.confidence == 0.6
        assert any("parent-domain inference" in p for p in contact.provenance)
        assert {(r.host, r.path) for r in sandbox.web.requests} >= {
            ("db.acme.example", WELL_KNOWN),
            ("acme.example", WELL_KNOWN),
        }

    async def test_exact_host_wins_over_parent(self, sandbox: Sandbox) -> None:
        """The same address found on the host and its parent keeps the host's confidence."""
        sandbox.serve("db.acme.example", VALID)
        sandbox.serve("acme.example", VALID)
        report = await lookup(db_query(), sandbox.ctx)
        [contact] = report.contacts
        assert contact.confidence == 0.9 and len(contact.provenance) > 2

    async def test_port_443_is_left_out_of_urls(self) -> None:
        """URLs carry the port only when it is not 443."""
        assert security_txt_urls("acme.example") == (
            "https://acme.example/.well-known/security.txt",
            "https://acme.example/security.txt",
        )
        assert security_txt_urls("acme.example", 8443)[0].startswith("https://acme.example:8443/")

    async def test_expired_file_is_not_used(self, sandbox: Sandbox) -> None:
        """An expired file's contacts are not mailed; a note says it exists but expired."""
        sandbox.serve("db.acme.example", VALID.replace("2026-12-31", "2026-01-31"))
        report = await lookup(db_query(), sandbox.ctx)
        assert report.contacts == []
        assert any("exists but expired on 2026-01-31" in n for n in report.notes)
        assert any("security@acme.example" in n for n in report.notes)

    async def test_multiple_expires_is_not_used(self, sandbox: Sandbox) -> None:
        """A file with two Expires fields is invalid and its contacts are not mailed."""
        sandbox.serve("db.acme.example", VALID + "Expires: 2026-10-01T00:00:00Z\n")
        report = await lookup(db_query(), sandbox.ctx)
        assert report.contacts == []
        assert any("multi_expire" in n for n in report.notes)

    async def test_no_contact(self, sandbox: Sandbox) -> None:
        """A file without Contact gives nothing and says so."""
        sandbox.serve("db.acme.example", "Expires: 2026-12-31T00:00:00Z\nPolicy: https://x/\n")
        report = await lookup(db_query(), sandbox.ctx)
        assert report.contacts == []
        assert any("has no Contact" in n for n in report.notes)

    async def test_html_soft_404_is_refused(self, sandbox: Sandbox) -> None:
        """A 200 HTML page is not a security.txt, whatever its declared type."""
        page = "<!doctype html><html><body>Welcome! Contact: mailto:x@acme.example</body></html>"
        sandbox.serve("db.acme.example", page, **{"Content-Type": "text/html"})
        sandbox.serve("db.acme.example", page, path="/security.txt")
        report = await lookup(db_query(), sandbox.ctx)
        assert report.contacts == []
        assert any("is not text/plain" in n for n in report.notes)
        assert any("HTML page" in n for n in report.notes)

    async def test_signed_file(self, sandbox: Sandbox) -> None:
        """A signed file's contacts are used; without the signer's key it is not verified."""
        sandbox.serve("db.acme.example", SIGNED)
        report = await lookup(db_query(), sandbox.ctx)
        [contact] = report.contacts
        assert contact.address == "psirt@acme.example"
        assert "signed; signature not verified: key not available" in contact.provenance
        assert any("OpenPGP-signed" in n for n in report.notes)

    async def test_legacy_location(self, sandbox: Sandbox) -> None:
        """Without a well-known file, the legacy /security.txt is used and noted."""
        sandbox.serve("db.acme.example", VALID, path="/security.txt")
        report = await lookup(db_query(), sandbox.ctx)
        [contact] = report.contacts
        assert contact.provenance[0].startswith(
            f"security.txt at {sandbox.url('db.acme.example', '/security.txt')}"
        )
        assert any("only at the legacy location" in n for n in report.notes)

    async def test_well_known_wins_over_legacy(self, sandbox: Sandbox) -> None:
        """When both exist the /.well-known/ copy is used and the legacy one is not fetched."""
        sandbox.serve("db.acme.example", VALID)
        sandbox.serve("db.acme.example", SIGNED, path="/security.txt")
        report = await lookup(db_query(), sandbox.ctx)
        assert [c.address for c in report.contacts] == ["security@acme.example"]
        paths = [r.path for r in sandbox.web.requests if r.host == "db.acme.example"]
        assert "/security.txt" not in paths

    async def test_redirect_is_followed_and_recorded(self, sandbox: Sandbox) -> None:
        """A redirect within the domain is followed, recorded, and its target may be Canonical."""
        target = sandbox.url("acme.example", "/files/security.txt")
        sandbox.web.route(WELL_KNOWN, Reply(301, b"", {"Location": target}), host="db.acme.example")
        sandbox.serve("acme.example", VALID + f"Canonical: {target}\n", path="/files/security.txt")
        report = await lookup(db_query("db.acme.example"), sandbox.ctx)
        assert [c.address for c in report.contacts] == ["security@acme.example"]
        redirect = f"redirect: {sandbox.url('db.acme.example')} -> {target}"
        assert redirect in report.notes
        exact = [c for c in report.contacts if c.confidence == 0.9]
        assert exact, "a same-domain redirect keeps the exact-host confidence"

    async def test_cross_domain_redirect_is_flagged(self, sandbox: Sandbox) -> None:
        """A redirect to another domain is noted for scrutiny and ranked lower."""
        target = sandbox.url("other.example")
        sandbox.web.route(WELL_KNOWN, Reply(302, b"", {"Location": target}), host="db.acme.example")
        sandbox.serve("other.example", VALID)
        report = await lookup(db_query("db.acme.example"), sandbox.ctx)
        assert any("redirects to another domain" in n for n in report.notes)
        assert all(c.confidence <= 0.6 for c in report.contacts)

    async def test_canonical_mismatch_is_not_trusted(self, sandbox: Sandbox) -> None:
        """A file whose Canonical lists only other URLs is not trusted."""
        body = VALID + "Canonical: https://elsewhere.example/.well-known/security.txt\n"
        sandbox.serve("db.acme.example", body)
        report = await lookup(db_query(), sandbox.ctx)
        assert report.contacts == []
        assert any("not trusted" in n for n in report.notes)

    async def test_http_redirect_is_refused(self, sandbox: Sandbox) -> None:
        """A redirect to plain http:// is refused; nothing is fetched over it."""
        insecure = f"http://acme.example:{sandbox.web.port}/security.txt"
        sandbox.web.route(
            WELL_KNOWN, Reply(301, b"", {"Location": insecure}), host="db.acme.example"
        )
        report = await lookup(db_query("db.acme.example"), sandbox.ctx)
        assert report.contacts == []
        assert any("refused non-HTTPS URL" in n for n in report.notes)
        assert report.error is not None

    async def test_huge_body_is_refused_quickly(self, sandbox: Sandbox) -> None:
        """A 50 MB answer is refused at the byte cap without being read."""
        chunk = b"# padding padding padding padding padding padding padding padding\n" * 16_000
        repeat = 50_000_000 // len(chunk) + 1
        sandbox.web.route(
            WELL_KNOWN,
            Reply(200, chunk, {"Content-Type": "text/plain"}, repeat=repeat),
            host="db.acme.example",
        )
        started = time.monotonic()
        report = await lookup(db_query("db.acme.example"), sandbox.ctx)
        assert time.monotonic() - started < 2
        assert report.contacts == []
        assert any("cap" in n for n in report.notes)

    async def test_slow_drip_is_bounded_by_the_timeout(self, sandbox: Sandbox) -> None:
        """A server dripping its body cannot hold the lookup past the HTTP timeout."""
        settings = sandbox.ctx.settings
        sandbox.ctx.settings = settings.model_copy(
            update={"http": settings.http.model_copy(update={"timeout": 0.3})}
        )
        sandbox.web.route(
            WELL_KNOWN,
            Reply(200, VALID.encode(), {"Content-Type": "text/plain"}, drip=0.05),
            host="db.acme.example",
        )
        started = time.monotonic()
        report = await lookup(db_query("db.acme.example"), sandbox.ctx)
        elapsed = time.monotonic() - started
        assert elapsed < 0.3 + 0.7
        assert report.contacts == []
        assert report.error is not None and "no complete answer" in report.error
        paths = [r.path for r in sandbox.web.requests if r.host == "db.acme.example"]
        assert paths == [WELL_KNOWN], "a timed-out host is not asked again"
        assert "db.acme.example" in report.answered, "a slow file may exist: no guessing"

    async def test_crlf_in_mailto_is_dropped(self, sandbox: Sandbox) -> None:
        """A mailto: contact smuggling CR/LF (percent-encoded) is refused; the others are kept."""
        body = (
            "Contact: mailto:security%0D%0ABcc:%20victim@other.example@acme.example\n"
            "Contact: mailto:psirt@acme.example\n"
            "Expires: 2026-12-31T00:00:00Z\n"
        )
        sandbox.serve("db.acme.example", body)
        report = await lookup(db_query("db.acme.example"), sandbox.ctx)
        assert [c.address for c in report.contacts] == ["psirt@acme.example"]
        refused = [n for n in report.notes if "Contact #1 refused" in n]
        assert refused and all("\r" not in n and "\n" not in n for n in refused)

    async def test_missing_charset_is_a_note(self, sandbox: Sandbox) -> None:
        """text/plain without a charset is used, with a note."""
        sandbox.serve("db.acme.example", VALID, **{"Content-Type": "text/plain"})
        report = await lookup(db_query("db.acme.example"), sandbox.ctx)
        assert [c.address for c in report.contacts] == ["security@acme.example"]
        assert any("has no charset" in n for n in report.notes)

    async def test_generic_hosting_name_is_skipped(self, sandbox: Sandbox) -> None:
        """A provider's pool name is not asked for a security.txt, nor is its provider domain."""
        report = await lookup(db_query("ec2-127-0-0-5.compute.amazonaws.com"), sandbox.ctx)
        assert report.contacts == [] and sandbox.web.requests == []
        assert any("generic hosting name" in n for n in report.notes)

    async def test_nothing_listening(self, sandbox: Sandbox) -> None:
        """A host without an HTTPS server is a note, not an error, and has not answered."""
        sandbox.dns.add_host("quiet.example", "127.0.0.9")
        report = await lookup(db_query("quiet.example"), sandbox.ctx)
        assert report.contacts == [] and report.error is None
        assert any("no security.txt from quiet.example" in n for n in report.notes)
        assert report.answered == []

    async def test_what_counts_as_answered(self, sandbox: Sandbox) -> None:
        """An expired file has answered (the owner spoke); an HTML soft 404 has not."""
        sandbox.serve("db.acme.example", VALID.replace("2026-12-31", "2026-01-31"))
        sandbox.web.route(
            WELL_KNOWN,
            Reply(200, b"<html><body>Not here</body></html>", {"Content-Type": "text/plain"}),
            host="acme.example",
        )
        report = await lookup(db_query(), sandbox.ctx)
        assert report.answered == ["db.acme.example"]
        assert report.contacts == [] and report.channels == []

    async def test_untrusted_certificate_answers_without_contacts(self, sandbox: Sandbox) -> None:
        """A name the server's certificate does not cover: not read, but counted as answered."""
        sandbox.dns.add_host("uncovered.example", "127.0.0.2")
        sandbox.serve("uncovered.example", VALID)
        report = await lookup(db_query("uncovered.example"), sandbox.ctx)
        assert report.contacts == [] and report.answered == ["uncovered.example"]
        assert any("certificate not trusted" in n for n in report.notes)

    async def test_over_the_line_limit_is_answered_and_refused(self, sandbox: Sandbox) -> None:
        """Thousands of Contact lines: over RFC 9116's limit, refused with the reason."""
        body = "".join(f"Contact: mailto:s{n}@acme.example\n" for n in range(1500))
        sandbox.serve("db.acme.example", body + "Expires: 2026-12-31T23:59:59Z\n")
        sandbox.ctx.settings = sandbox.ctx.settings.model_copy(
            update={
                "http": sandbox.ctx.settings.http.model_copy(
                    update={"security_txt_max_bytes": 100_000}
                )
            }
        )
        report = await lookup(db_query(), sandbox.ctx)
        assert report.contacts == [] and "db.acme.example" in report.answered
        assert any("over 1000 lines" in n for n in report.notes)

    async def test_not_found_everywhere(self, sandbox: Sandbox) -> None:
        """404 on every URL is an empty report without an error."""
        report = await lookup(db_query(), sandbox.ctx)
        assert report.contacts == [] and report.error is None
        assert any("HTTP 404" in n for n in report.notes)
        assert len(sandbox.web.requests) == 4
