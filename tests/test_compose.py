"""Composing disclosures: template choice, safe headers, the sandbox, attachments, X-ARF."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import uuid
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage, Message
from email.policy import default
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

from notifier.compose import ComposedMessage, compose, findings_csv, template_for, xarf_report
from notifier.config import Settings
from notifier.errors import ConfigError, TemplateError
from notifier.models import Contact, Finding, Network, Role

NOW = datetime(2025, 1, 13, 10, 0, tzinfo=UTC)
SEEN = datetime(2025, 1, 11, 15, 35, tzinfo=UTC)
CASE = "NTF-3KQ7ZD2M4A"


@pytest.fixture
def settings() -> Settings:
    return Settings.from_mapping(
        {
            "sender": {
                "address": "Example Research <disclosure@research.example>",
                "organisation": "Example Research",
                "website": "https://research.example/scanning",
            }
        }
    )


def finding(text: str = "Elasticsearch without authentication", **kw: Any) -> Finding:
    values: dict[str, Any] = {"port": 9200, "observed_at": SEEN, "hostname": "db.example.org"}
    values.update(kw)
    return Finding(ip_address(values.pop("ip", "193.0.6.139")), text, **values)


def contact(role: Role = Role.OWNER, **kw: Any) -> Contact:
    values: dict[str, Any] = {
        "address": "abuse@ripe.net",
        "role": role,
        "sources": ("rdap",),
        "confidence": 0.9,
        "provenance": ("RDAP abuse contact of 193.0.0.0/21 (RIPE NCC)",),
        "name": "RIPE NCC Abuse",
    }
    values.update(kw)
    return Contact(**values)


NETWORK = Network(
    "ripe", "RIPE-NCC", "RIPE-NCC", ("193.0.0.0/21",), country="NL", org="RIPE NCC", asn=3333
)


def make(settings: Settings, findings: list[Finding] | None = None, **kw: Any) -> ComposedMessage:
    options: dict[str, Any] = {"template": None, "case_ref": CASE, "now": NOW}
    options.update(kw)
    who = options.pop("contact", contact())
    return compose(findings or [finding()], who, settings=settings, **options)


def parsed(composed: ComposedMessage) -> EmailMessage:
    message = message_from_bytes(composed.raw, policy=default)
    assert isinstance(message, EmailMessage)
    return message


def body(composed: ComposedMessage) -> str:
    part = parsed(composed).get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def attachment(composed: ComposedMessage, filename: str) -> Message | None:
    for part in parsed(composed).iter_attachments():
        if part.get_filename() == filename:
            return part
    return None


def header_lines(raw: bytes) -> list[bytes]:
    head = raw.split(b"\r\n\r\n", 1)[0]
    return head.split(b"\r\n")


class TestTemplateChoice:
    @pytest.mark.parametrize(
        ("role", "expected"),
        [
            (Role.OWNER, "owner"),
            (Role.OVERRIDE, "owner"),
            (Role.NETWORK, "network"),
            (Role.REGISTRAR, "network"),
            (Role.NATIONAL_CERT, "cert"),
        ],
    )
    def test_role_picks_template(self, settings: Settings, role: Role, expected: str) -> None:
        """The contact's role chooses the template when none is named."""
        assert template_for(contact(role)) == expected
        assert make(settings, contact=contact(role)).template == expected

    def test_named_template_wins(self, settings: Settings) -> None:
        """An explicit template overrides the role, with or without its extension."""
        assert make(settings, template="cert").template == "cert"
        assert make(settings, template="network.txt.j2").template == "network"

    def test_reply_uses_followup(self, settings: Settings) -> None:
        """A message threaded to an earlier one is a follow-up unless a template is named."""
        composed = make(settings, in_reply_to="<ntf-1.aa@research.example>")
        assert composed.template == "followup"
        assert "follow-up to our earlier notice" in body(composed)

    def test_unknown_template(self, settings: Settings) -> None:
        """An unknown template name is a TemplateError listing the available ones."""
        with pytest.raises(TemplateError, match="available: cert, followup, network, owner"):
            make(settings, template="nope")

    @pytest.mark.parametrize("name", ["../owner", "_macros", "owner.html.j2", "a/b", ""])
    def test_bad_template_names(self, settings: Settings, name: str) -> None:
        """Paths, private macro files and other extensions are refused as template names."""
        with pytest.raises(TemplateError):
            template_for(contact(), name)


class TestHeaders:
    def test_headers_present(self, settings: Settings) -> None:
        """From, To, Subject, Date, Message-ID, Auto-Submitted and the notifier headers are set."""
        composed = make(settings, log_head="12 sha256:" + "ab" * 32)
        msg = parsed(composed)
        assert msg["From"] == "Example Research <disclosure@research.example>"
        assert msg["To"] == "RIPE NCC Abuse <abuse@ripe.net>"
        assert msg["Subject"] == (
            f"[{CASE}] Exposed service on 193.0.6.139: Elasticsearch without authentication"
        )
        assert msg["Date"] == "Mon, 13 Jan 2025 10:00:00 +0000"
        assert msg["Message-ID"] == composed.message_id
        assert re.fullmatch(
            r"<ntf-3kq7zd2m4a\.[0-9a-f]{16}@research\.example>", composed.message_id
        )
        assert msg["Auto-Submitted"] == "auto-generated"
        assert msg["X-Notifier-Case"] == CASE
        assert msg["X-Notifier-Log-Head"] == "12 sha256:" + "ab" * 32
        assert msg["In-Reply-To"] is None and msg["References"] is None

    def test_no_log_head_header_without_head(self, settings: Settings) -> None:
        """X-Notifier-Log-Head is left out when no log head is given."""
        assert parsed(make(settings))["X-Notifier-Log-Head"] is None

    def test_threading_headers(self, settings: Settings) -> None:
        """In-Reply-To names the parent; References carries the chain ending with the parent."""
        composed = make(
            settings,
            in_reply_to="<ntf-1.bb@research.example>",
            references=["<ntf-1.aa@research.example>"],
        )
        msg = parsed(composed)
        assert msg["In-Reply-To"] == "<ntf-1.bb@research.example>"
        assert msg["References"] == "<ntf-1.aa@research.example> <ntf-1.bb@research.example>"
        assert msg["Subject"].startswith(f"Re: [{CASE}]")

    def test_batch_subject(self, settings: Settings) -> None:
        """Several addresses are summed up in the subject by count."""
        findings = [finding(ip="193.0.6.139"), finding(ip="193.0.6.140"), finding(ip="2001:db8::1")]
        assert parsed(make(settings, findings))["Subject"] == (
            f"[{CASE}] Exposed services on 3 addresses"
        )
        same = [finding(port=9200), finding("Kibana without authentication", port=5601)]
        assert parsed(make(settings, same))["Subject"] == (
            f"[{CASE}] Exposed services on 193.0.6.139 (2 findings)"
        )

    def test_raw_bytes_are_smtp_ready(self, settings: Settings) -> None:
        """The raw message is 7-bit with CRLF line ends, and the digest is its sha256."""
        composed = make(settings, contact=contact(name="Zoë Ünïcode"))
        raw = composed.raw
        raw.decode("ascii")
        assert b"\n" not in raw.replace(b"\r\n", b"")
        assert composed.digest == hashlib.sha256(raw).hexdigest()
        assert composed.recipient == "abuse@ripe.net"
        assert parsed(composed)["To"] == "Zoë Ünïcode <abuse@ripe.net>"

    def test_each_message_has_its_own_id(self, settings: Settings) -> None:
        """Two renderings of the same case get distinct Message-IDs."""
        assert make(settings).message_id != make(settings).message_id


class TestHeaderInjection:
    HOSTILE = "x\r\nBcc: victim@evil.example\r\nX-Injected: yes"

    def test_crlf_never_reaches_a_header(self, settings: Settings) -> None:
        """CR/LF in the contact name, finding text, hostname or network cannot add headers."""
        composed = make(
            settings,
            [finding(self.HOSTILE, hostname="h.example\r\nX-Injected: host")],
            contact=contact(name=self.HOSTILE),
            network=Network("ripe", "H\r\nX-Injected: net", self.HOSTILE),
            log_head="head\r\nX-Injected: log",
        )
        msg = parsed(composed)
        assert msg["Bcc"] is None
        assert msg["X-Injected"] is None
        for line in header_lines(composed.raw):
            assert not line.lower().startswith((b"bcc:", b"x-injected:"))
        for name, value in msg.items():
            assert "\r" not in str(value) and "\n" not in str(value), name
        # the hostile text is still shown, flattened onto one line
        assert "x Bcc: victim@evil.example X-Injected: yes" in body(composed)

    def test_control_characters_in_recipient_refused(self, settings: Settings) -> None:
        """A recipient address carrying CR/LF is refused, not repaired."""
        with pytest.raises(ConfigError, match="not a deliverable e-mail address"):
            make(settings, contact=contact(address="a@example.org\r\nBcc: b@example.org"))

    def test_placeholder_recipient_refused(self, settings: Settings) -> None:
        """A registry placeholder is not an address to write to."""
        with pytest.raises(ConfigError):
            make(settings, contact=contact(address="removed@lacnic.net"))

    def test_bad_message_id_refused(self, settings: Settings) -> None:
        """A threading id that is not a Message-ID (or smuggles a header) is refused."""
        with pytest.raises(ConfigError, match="not a Message-ID"):
            make(settings, in_reply_to="<a@b.example>\r\nBcc: c@d.example")
        with pytest.raises(ConfigError, match="not a Message-ID"):
            make(settings, references=["no-brackets@b.example"])


class TestSandbox:
    def user_template(self, tmp_path: Path, text: str, name: str = "owner.txt.j2") -> Path:
        (tmp_path / name).write_text(text, encoding="utf-8")
        return tmp_path

    @pytest.mark.parametrize(
        "source",
        [
            "{{ ''.__class__.__mro__ }}",
            "{{ ''.__class__.__mro__[1].__subclasses__() }}",
            "{{ cycler.__init__.__globals__ }}",
            "{{ findings.__class__ }}",
            "{% for f in findings %}{{ f.__class__.__base__ }}{% endfor %}",
        ],
    )
    def test_internals_unreachable(self, settings: Settings, tmp_path: Path, source: str) -> None:
        """A user template poking at Python internals fails with TemplateError."""
        folder = self.user_template(tmp_path, source)
        with pytest.raises(TemplateError):
            make(settings, template_dir=folder)

    def test_context_is_immutable(self, settings: Settings, tmp_path: Path) -> None:
        """A template cannot modify the data it is given."""
        folder = self.user_template(tmp_path, "{{ findings.append(1) }}")
        with pytest.raises(TemplateError):
            make(settings, template_dir=folder)

    def test_strict_undefined(self, settings: Settings, tmp_path: Path) -> None:
        """An undefined variable fails the render instead of printing nothing."""
        folder = self.user_template(tmp_path, "Hello {{ recipent.name }}")
        with pytest.raises(TemplateError, match="recipent"):
            make(settings, template_dir=folder)

    def test_template_errors_translated(self, settings: Settings, tmp_path: Path) -> None:
        """Syntax errors and exceptions raised while rendering become TemplateError."""
        with pytest.raises(TemplateError, match="line 1"):
            make(settings, template_dir=self.user_template(tmp_path, "{% if %}"))
        with pytest.raises(TemplateError, match="ZeroDivisionError"):
            make(settings, template_dir=self.user_template(tmp_path, "{{ 1 // 0 }}"))

    def test_user_template_wins(self, settings: Settings, tmp_path: Path) -> None:
        """A user's template of the same name replaces the shipped one; others stay shipped."""
        folder = self.user_template(tmp_path, "Custom for {{ recipient.address }} ({{ case_ref }})")
        assert body(make(settings, template_dir=folder)) == f"Custom for abuse@ripe.net ({CASE})\n"
        shipped = make(settings, template="cert", template_dir=folder)
        assert "national CERT" in body(shipped)

    def test_user_template_can_use_macros(self, settings: Settings, tmp_path: Path) -> None:
        """User templates import the shipped macros."""
        folder = self.user_template(
            tmp_path,
            '{% import "_macros.j2" as m with context %}{{ m.findings_table() }}',
            name="short.txt.j2",
        )
        text = body(make(settings, template="short", template_dir=folder))
        assert "Finding:   Elasticsearch without authentication" in text

    def test_html_alternative_is_autoescaped(self, settings: Settings, tmp_path: Path) -> None:
        """An .html.j2 beside the text template adds an HTML part with data escaped."""
        self.user_template(tmp_path, "<p>{{ findings[0].text }}</p>", name="owner.html.j2")
        composed = make(settings, [finding("<script>alert(1)</script>")], template_dir=tmp_path)
        html = parsed(composed).get_body(("html",))
        assert html is not None
        content = html.get_content()
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content
        assert "<script>" not in content
        assert "<script>alert(1)</script>" in body(composed)  # plain text is not escaped


class TestBody:
    def test_owner_message_contents(self, settings: Settings) -> None:
        """The owner notice says what, where, when, why, how to fix, who we are and why them."""
        text = body(make(settings, network=NETWORK, log_head="1 sha256:00"))
        for expected in [
            "Hello RIPE NCC Abuse,",
            "Address:   193.0.6.139",
            "Port:      9200",
            "Host name: db.example.org",
            "Finding:   Elasticsearch without authentication",
            "Observed:  2025-01-11 15:35",
            "Range:     193.0.0.0/21",
            "Registry:  ripe, AS3333, country NL",
            "Why it matters",
            "Elasticsearch / OpenSearch without authentication",
            "xpack.security.enabled: true",
            "https://www.elastic.co/docs/deploy-manage/security/set-up-minimal-security",
            "/_cat/indices",
            "rotate the credentials",
            "retained no data",
            "2025-01-13 10:00  this notice sent to abuse@ripe.net",
            "RDAP abuse contact of 193.0.0.0/21 (RIPE NCC)",
            "write to disclosure@research.example",
            f"quote our reference {CASE}",
            "https://research.example/scanning",
            "Example Research",
        ]:
            assert expected in text, expected
        assert "\n\n\n" not in text

    def test_network_asks_to_forward(self, settings: Settings) -> None:
        """The abuse-desk notice asks them to forward it to their customer."""
        text = body(make(settings, contact=contact(Role.NETWORK), network=NETWORK))
        assert "Please forward this message to the customer" in text

    def test_cert_escalation(self, settings: Settings) -> None:
        """The CERT notice explains the escalation and names the country."""
        text = body(make(settings, contact=contact(Role.NATIONAL_CERT, name=""), network=NETWORK))
        assert text.startswith("Hello,\n")
        assert (
            "escalating to you, as the national CERT, because we could not\nreach the operator"
            in text
        )
        assert "constituency" in text and "country NL" in text
        assert "inform the national CERT" not in text

    def test_sources_shown_without_provenance(self, settings: Settings) -> None:
        """With no provenance lines the message still says where the address came from."""
        who = contact(provenance=(), sources=("security.txt", "rdap"))
        assert "through: security.txt, rdap" in body(make(settings, contact=who))

    def test_batch_table(self, settings: Settings) -> None:
        """Several findings are listed as a table, and unknown times shown as '-'."""
        findings = [finding(), finding("Redis open", ip="193.0.6.140", port=6379, observed_at=None)]
        text = body(make(settings, findings))
        assert re.search(r"193\.0\.6\.139 +9200 +2025-01-11 15:35 +Elasticsearch", text)
        assert re.search(r"193\.0\.6\.140 +6379 +- +Redis open", text)
        assert "attached as findings.csv" in text

    def test_long_hostile_text_bounded(self, settings: Settings) -> None:
        """A finding's text is shown on one line and bounded."""
        text = body(make(settings, [finding("A" * 5000 + "\n\nFake signature")]))
        line = next(ln for ln in text.splitlines() if ln.startswith("  Finding:"))
        assert len(line) < 600
        assert "\n\nFake signature" not in text


class TestAttachments:
    def test_single_finding_has_xarf_only(self, settings: Settings) -> None:
        """One finding carries xarf.json and no CSV."""
        composed = make(settings)
        assert attachment(composed, "xarf.json") is not None
        assert attachment(composed, "findings.csv") is None

    def test_several_findings_have_csv_only(self, settings: Settings) -> None:
        """Several findings carry a CSV of them all and no X-ARF (one incident per report)."""
        findings = [
            finding(),
            finding('=HYPERLINK("http://x") Redis', ip="193.0.6.140", port=6379),
            finding("MongoDB open", ip="2001:67c:2e8:22::c100:68b", port=27017, observed_at=None),
        ]
        composed = make(settings, findings)
        assert attachment(composed, "xarf.json") is None
        part = attachment(composed, "findings.csv")
        assert part is not None and part.get_content_type() == "text/csv"
        rows = list(csv.reader(io.StringIO(part.get_content())))  # type: ignore[attr-defined]
        assert rows == [
            ["ip", "port", "finding", "observed_at"],
            ["193.0.6.139", "9200", "Elasticsearch without authentication", "2025-01-11T15:35:00Z"],
            ["193.0.6.140", "6379", '\'=HYPERLINK("http://x") Redis', "2025-01-11T15:35:00Z"],
            ["2001:67c:2e8:22::c100:68b", "27017", "MongoDB open", ""],
        ]

    def test_csv_function(self) -> None:
        """findings_csv writes CRLF rows with a header."""
        text = findings_csv([finding(port=None, observed_at=None)])
        assert text.split("\r\n") == [
            "ip,port,finding,observed_at",
            "193.0.6.139,,Elasticsearch without authentication,",
            "",
        ]

    def test_xarf_fields(self, settings: Settings) -> None:
        """The X-ARF report names the address, port, service and us, with a fresh UUIDv4."""
        part = attachment(make(settings), "xarf.json")
        assert part is not None and part.get_content_type() == "application/json"
        report = json.loads(part.get_content())  # type: ignore[attr-defined]
        assert report["xarf_version"] == "4.2.0"
        assert uuid.UUID(report["report_id"]).version == 4
        assert report["timestamp"] == "2025-01-11T15:35:00Z"
        assert report["source_identifier"] == "193.0.6.139"
        assert report["service_port"] == 9200
        assert report["service"] == "elasticsearch"
        assert (report["category"], report["type"]) == ("vulnerability", "open_service")
        party = {
            "org": "Example Research",
            "contact": "disclosure@research.example",
            "domain": "research.example",
        }
        assert report["reporter"] == party and report["sender"] == party
        assert f"case:{CASE.lower()}" in report["tags"]
        assert "evidence" not in report

    def test_xarf_service_from_extra_or_unknown(self, settings: Settings) -> None:
        """The service comes from the finding's extra data, else the port, else 'unknown'."""
        named = finding(port=8443, extra=(("service", "Grafana"),))
        assert xarf_report(named, settings=settings, case_ref=CASE, now=NOW)["service"] == "grafana"
        odd = finding(port=31337, observed_at=None)
        report = xarf_report(odd, settings=settings, case_ref=CASE, now=NOW)
        assert report["service"] == "unknown"
        assert report["timestamp"] == "2025-01-13T10:00:00Z"


def xarf_validator(corpus: Path, schema: str) -> Draft202012Validator:
    folder = corpus / "xarf" / "schemas"
    resources = []
    for path in sorted(folder.glob("*.json")):
        contents = json.loads(path.read_text(encoding="utf-8"))
        resources.append((contents["$id"], Resource.from_contents(contents)))
    registry: Registry[Any] = Registry().with_resources(resources)
    root = json.loads((folder / schema).read_text(encoding="utf-8"))
    return Draft202012Validator(
        root, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


@pytest.mark.corpus
class TestXARFSchema:
    @pytest.mark.parametrize("schema", ["xarf-v4-master.json", "vulnerability-open-service.json"])
    def test_report_validates(self, settings: Settings, corpus_dir: Path, schema: str) -> None:
        """Our X-ARF report validates against the published v4 schemas."""
        validator = xarf_validator(corpus_dir, schema)
        part = attachment(make(settings), "xarf.json")
        assert part is not None
        validator.validate(json.loads(part.get_content()))  # type: ignore[attr-defined]
        bare = xarf_report(finding(port=None), settings=settings, case_ref=CASE, now=NOW)
        validator.validate(bare)

    def test_validator_is_not_vacuous(self, settings: Settings, corpus_dir: Path) -> None:
        """The published sample passes and a report missing its service fails."""
        validator = xarf_validator(corpus_dir, "vulnerability-open-service.json")
        sample = corpus_dir / "xarf" / "vulnerability-open-service.json"
        validator.validate(json.loads(sample.read_text(encoding="utf-8")))
        report = xarf_report(finding(), settings=settings, case_ref=CASE, now=NOW)
        del report["service"]
        with pytest.raises(ValidationError):
            validator.validate(report)
        report = xarf_report(finding(), settings=settings, case_ref=CASE, now=NOW)
        report["report_id"] = "not-a-uuid"
        with pytest.raises(ValidationError):
            validator.validate(report)


@pytest.mark.parametrize("name", ["Ünï NOC", "Network Operations " * 6, 'x Bcc: "v@example.org"'])
def test_bytes_as_the_standard_library_writes_them(
    settings: Settings, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The header classes and MIME headers made once and the plain boundary check change no
    byte."""
    import random
    from email.generator import BytesGenerator
    from email.headerregistry import HeaderRegistry
    from email.policy import EmailPolicy

    from notifier import compose as package
    from notifier.compose import mime

    findings = [finding(), finding("Redis without auth", port=6379, hostname=None)]
    contact = Contact("noc@isp.example", Role.NETWORK, ("rdap",), 0.9, name=name)

    def raw() -> bytes:
        random.seed(7)  # the MIME boundaries
        made = compose(findings, contact, settings=settings, template=None, case_ref=CASE, now=NOW)
        return made.raw.replace(made.message_id.encode(), b"<id>")

    raw()  # the second message finds the parsed MIME headers the first left
    ours = raw()
    # the library's header classes and parsing, our folding
    stock = mime._Policy(linesep="\r\n", header_factory=HeaderRegistry())
    monkeypatch.setattr(mime._Policy, "header_store_parse", EmailPolicy.header_store_parse)
    monkeypatch.setattr(package, "POLICY", stock)
    monkeypatch.setattr(mime, "POLICY", stock)
    monkeypatch.setattr(mime._Generator, "_make_boundary", BytesGenerator._make_boundary)
    assert raw() == ours
