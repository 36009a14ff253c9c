"""Render a disclosure e-mail from findings and a contact: bytes ready for SMTP, and their digest.

Templates run in Jinja's immutable sandbox with ``StrictUndefined``: a user's template can neither
reach Python internals nor silently print an empty variable. The shipped ``templates/`` folder is
searched after the user's own folder, so a user template of the same name wins.

Every value that reaches a header passes ``addresses.header_text`` (no CR, LF or control character
survives) and the recipient passes ``addresses.clean_address``. The body is quoted-printable and
the headers RFC 2047-encoded, so the bytes handed to SMTP are 7-bit ASCII with CRLF line ends.

Template context (what templates can use):

``case_ref``, ``now`` (``YYYY-MM-DD HH:MM``, UTC), ``role`` (``owner``, ``network`` or ``cert``),
``sender`` {name, address, email, domain, organisation, website},
``recipient`` {address, name, role, sources[], provenance[]},
``findings`` [{ip, port, text, hostname, observed_at}] (all strings, ``""`` when unknown),
``addresses`` and ``hostnames`` (distinct, in order), ``network`` (None or {registry, handle,
name, range, org, country, asn}), ``first_seen``, ``last_seen``, ``attachments`` {csv, xarf}
(file names, ``""`` when not attached), ``followup_days``, ``in_reply_to``, ``columns`` (column
widths for the findings table).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .addresses import clean_address, header_text
from .config import Settings, shipped_path
from .errors import ConfigError, TemplateError
from .models import Contact, Finding, Network, Role

__all__ = [
    "ComposedMessage",
    "compose",
    "template_for",
    "xarf_report",
    "findings_csv",
    "XARF_VERSION",
]

XARF_VERSION = "4.2.0"

_ROLE_TEMPLATES = {
    Role.OVERRIDE: "owner",
    Role.OWNER: "owner",
    Role.NETWORK: "network",
    Role.REGISTRAR: "network",
    Role.NATIONAL_CERT: "cert",
}
_TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_MESSAGE_ID = re.compile(r"^<[^<>\s@]+@[^<>\s@]+>$")
# a finding's text is data from a scanner: bounded in the body as in headers
_BODY_TEXT_LIMIT = 500
# ports whose service name an X-ARF consumer can act on; anything else says "unknown"
# fmt: off
_SERVICES = {
    21: "ftp", 22: "ssh", 23: "telnet", 25: "smtp", 53: "dns", 80: "http", 110: "pop3",
    111: "portmap", 123: "ntp", 137: "netbios", 143: "imap", 161: "snmp", 389: "ldap",
    443: "https", 445: "smb", 502: "modbus", 623: "ipmi", 873: "rsync", 1433: "mssql",
    1521: "oracle", 1883: "mqtt", 1900: "ssdp", 2049: "nfs", 2375: "docker", 2376: "docker",
    2379: "etcd", 3306: "mysql", 3389: "rdp", 4786: "cisco-smart-install", 5432: "postgresql",
    5601: "kibana", 5900: "vnc", 5984: "couchdb", 5985: "winrm", 6379: "redis",
    6443: "kubernetes", 8086: "influxdb", 8500: "consul", 9000: "http", 9042: "cassandra",
    9092: "kafka", 9200: "elasticsearch", 9300: "elasticsearch", 10250: "kubelet",
    11211: "memcached", 27017: "mongodb", 50070: "hadoop",
}
# fmt: on
_TAG = re.compile(r"^[a-z0-9][a-z0-9_+-]*:[a-z0-9][a-z0-9_+-]*$")
_CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PHRASE_SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]')
# machine-read headers whose single long word folding would push onto a continuation line
_UNFOLDED = frozenset({"x-notifier-log-head", "x-notifier-case", "message-id", "in-reply-to"})


class _Policy(EmailPolicy):
    """SMTP line ends; the headers tools parse back are never folded (they stay under 998)."""

    def fold_binary(self, name: str, value: str) -> bytes:
        text = str(value)
        if name.lower() in _UNFOLDED and text.isascii() and len(name) + len(text) < 990:
            return f"{name}: {text}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


_POLICY = _Policy(linesep="\r\n")


@dataclass(frozen=True, slots=True)
class ComposedMessage:
    """A rendered message and the exact bytes that will be handed to the mail server."""

    message: EmailMessage
    message_id: str
    raw: bytes  # CRLF line ends, 7-bit: what SMTP DATA carries
    digest: str  # sha256 hex of ``raw``
    case_ref: str
    recipient: str
    template: str = ""


# -- environment ------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _environment(user_dir: str | None) -> ImmutableSandboxedEnvironment:
    search = [user_dir] if user_dir else []
    search.append(str(shipped_path("templates")))
    return ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(search),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "htm", "xml", "html.j2", "htm.j2", "xml.j2"),
            default_for_string=False,
            default=False,
        ),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def template_for(contact: Contact, template: str | None = None) -> str:
    """The template base name for ``contact``: ``template`` when given, else by its role."""
    if template is None:
        return _ROLE_TEMPLATES[contact.role]
    name = template.removesuffix(".txt.j2")
    if not _TEMPLATE_NAME.match(name):
        raise TemplateError(
            f"template name must be a bare name like 'owner' or 'owner.txt.j2': {template!r}"
        )
    return name


def _render(
    env: ImmutableSandboxedEnvironment, name: str, context: dict[str, Any], *, required: bool
) -> str | None:
    try:
        template = env.get_template(name)
    except jinja2.TemplateNotFound:
        if not required:
            return None
        available = sorted(
            t.removesuffix(".txt.j2")
            for t in env.list_templates(extensions=["j2"])
            if t.endswith(".txt.j2") and not t.startswith("_")
        )
        raise TemplateError(
            f"no template named {name.removesuffix('.txt.j2')!r} "
            f"(available: {', '.join(available) or 'none'})"
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template {name} line {exc.lineno}: {exc.message}") from None
    try:
        return template.render(context)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"template {name}: {exc}") from None
    except Exception as exc:
        # a user's template is code we run: whatever it raises is a template failure
        raise TemplateError(f"template {name}: {type(exc).__name__}: {exc}") from None


def _tidy(text: str) -> str:
    """Templates joined from optional blocks leave blank runs: at most one blank line, one end."""
    lines = [line.rstrip() for line in text.splitlines()]
    tidy = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
    return tidy + "\n"


# -- context ----------------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _when(moment: datetime | None) -> str:
    return _utc(moment).strftime("%Y-%m-%d %H:%M") if moment is not None else ""


def _iso(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sender(settings: Settings) -> tuple[str, str, str]:
    """(display name, address, domain) of the configured sender."""
    name, address = parseaddr(settings.sender.address)
    if "@" not in address:
        raise ConfigError(f"sender.address is not an e-mail address: {settings.sender.address!r}")
    return header_text(name), address, address.rpartition("@")[2].lower()


def _service(finding: Finding) -> str:
    extra = dict(finding.extra)
    named = extra.get("service", "").strip().lower()
    if named:
        return header_text(named, 64)
    return _SERVICES.get(finding.port or 0, "unknown")


def _context(
    findings: Sequence[Finding],
    contact: Contact,
    kind: str,
    *,
    settings: Settings,
    case_ref: str,
    now: datetime,
    network: Network | None,
    in_reply_to: str,
    attachments: dict[str, str],
) -> dict[str, Any]:
    name, address, domain = _sender(settings)
    rows = [
        {
            "ip": str(f.ip),
            "port": str(f.port) if f.port else "",
            "text": header_text(f.text, _BODY_TEXT_LIMIT),
            "hostname": header_text(f.hostname, 253) if f.hostname else "",
            "observed_at": _when(f.observed_at),
        }
        for f in findings
    ]
    seen = sorted(_utc(f.observed_at) for f in findings if f.observed_at is not None)
    net = None
    if network is not None:
        net = {
            "registry": header_text(network.registry),
            "handle": header_text(network.handle),
            "name": header_text(network.name),
            "range": ", ".join(header_text(c) for c in network.cidrs)
            or (f"{network.start} - {network.end}" if network.start else ""),
            "org": header_text(network.org),
            "country": header_text(network.country),
            "asn": network.asn,
        }
    days = settings.followup.after_days
    return {
        "case_ref": case_ref,
        "now": _when(now),
        "role": kind,
        "sender": {
            "name": name,
            "address": address,
            "email": address,
            "domain": domain,
            "organisation": header_text(settings.sender.organisation),
            "website": header_text(settings.sender.website),
        },
        "recipient": {
            "address": contact.address,
            "name": header_text(contact.name),
            "role": str(contact.role),
            "sources": [header_text(s) for s in contact.sources],
            "provenance": [header_text(p, _BODY_TEXT_LIMIT) for p in contact.provenance],
        },
        "findings": rows,
        "addresses": list(dict.fromkeys(r["ip"] for r in rows)),
        "hostnames": list(dict.fromkeys(r["hostname"] for r in rows if r["hostname"])),
        "network": net,
        "first_seen": _when(seen[0]) if seen else "",
        "last_seen": _when(seen[-1]) if seen else "",
        "attachments": attachments,
        "followup_days": int(days) if float(days).is_integer() else days,
        "in_reply_to": in_reply_to,
        "columns": {
            "ip": max(len("Address"), *(len(r["ip"]) for r in rows)),
            "port": max(len("Port"), *(len(r["port"]) for r in rows)),
            "observed": max(len("Observed (UTC)"), *(len(r["observed_at"]) for r in rows)),
        },
    }


# -- attachments ------------------------------------------------------------------------------


def _csv_cell(value: str) -> str:
    # a spreadsheet would run a cell starting with these as a formula (CSV injection)
    return "'" + value if value.startswith(_CSV_FORMULA_START) else value


def findings_csv(findings: Sequence[Finding]) -> str:
    """The findings as CSV (ip, port, finding, observed_at), CRLF rows, formula-safe cells."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["ip", "port", "finding", "observed_at"])
    for f in findings:
        writer.writerow(
            [
                str(f.ip),
                str(f.port) if f.port else "",
                _csv_cell(header_text(f.text, _BODY_TEXT_LIMIT)),
                _iso(f.observed_at) if f.observed_at else "",
            ]
        )
    return out.getvalue()


def xarf_report(
    finding: Finding, *, settings: Settings, case_ref: str, now: datetime
) -> dict[str, Any]:
    """An X-ARF v4 ``vulnerability/open_service`` report for one finding (one incident each)."""
    _name, address, domain = _sender(settings)
    party = {
        "org": header_text(settings.sender.organisation) or domain,
        "contact": address,
        "domain": domain,
    }
    service = _service(finding)
    tags = [f"service:{service}", "exposure:public", f"case:{case_ref.lower()}"]
    report: dict[str, Any] = {
        "xarf_version": XARF_VERSION,
        "report_id": str(uuid.uuid4()),
        "timestamp": _iso(finding.observed_at or now),
        "reporter": party,
        "sender": dict(party),
        "source_identifier": str(finding.ip),
        "category": "vulnerability",
        "type": "open_service",
        "evidence_source": "vulnerability_scan",
        "service": service,
        "description": header_text(finding.text, 1000),
        "remediation": (
            "Restrict network access to the service, enable authentication, and rotate "
            "credentials if data was exposed"
        ),
        "tags": [t for t in tags if _TAG.match(t)],
    }
    if finding.port:
        report["source_port"] = finding.port
        report["service_port"] = finding.port
    return report


# -- headers ----------------------------------------------------------------------------------


def _display_name(name: str) -> str:
    """The recipient's name from a registry, as plain words that need no quoting in ``To``.

    Python's folding of a long quoted display name drops the quotes, so a name such as
    ``x Bcc: victim@example.org, ...`` would reach the recipient as a ``To`` header naming
    other addresses. RFC 5322 specials are dropped, leaving only atoms, which fold safely.
    """
    return _no_encoded_words(" ".join(_PHRASE_SPECIALS.sub(" ", header_text(name)).split()))


def _message_id_list(values: Sequence[str]) -> list[str]:
    ids = []
    for value in values:
        cleaned = header_text(value, 998)
        if not _MESSAGE_ID.match(cleaned):
            raise ConfigError(f"not a Message-ID: {cleaned!r}")
        ids.append(cleaned)
    return list(dict.fromkeys(ids))


def _subject(findings: Sequence[Finding], case_ref: str, followup: bool) -> str:
    ips = list(dict.fromkeys(str(f.ip) for f in findings))
    if len(findings) == 1:
        text = f"Exposed service on {ips[0]}: {header_text(findings[0].text, 120)}"
    elif len(ips) == 1:
        text = f"Exposed services on {ips[0]} ({len(findings)} findings)"
    else:
        text = f"Exposed services on {len(ips)} addresses"
    subject = f"[{header_text(case_ref, 40)}] {text}"
    return _no_encoded_words(header_text(("Re: " if followup else "") + subject, 250))


def _no_encoded_words(text: str) -> str:
    """``text`` with anything shaped like an RFC 2047 encoded word broken up.

    The email package decodes ``=?charset?q?...?=`` in a header value it is given and, before
    Python 3.11.10 / 3.12.5 (CVE-2024-6923), writes a CR LF decoded from one out raw: a finding
    text could then add a ``Bcc:`` line to the message.
    """
    return text.replace("=?", "= ?")


def _check_header_block(raw: bytes, msg: EmailMessage) -> None:
    """Refuse bytes whose header block holds a header other than those written (last defence)."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    found = sorted(
        line.split(b":", 1)[0].decode("ascii", "replace").lower()
        for line in head.split(b"\r\n")
        if line[:1] not in (b" ", b"\t")
    )
    if found != sorted(name.lower() for name in msg.keys()):
        raise TemplateError("refusing to send a message whose headers are not the ones written")


def compose(
    findings: Sequence[Finding],
    contact: Contact,
    *,
    settings: Settings,
    template: str | None,
    case_ref: str,
    now: datetime,
    log_head: str | None = None,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    network: Network | None = None,
    template_dir: str | os.PathLike[str] | None = None,
) -> ComposedMessage:
    """Render the disclosure about ``findings`` for ``contact``.

    The template is chosen by the contact's role (owner/override → ``owner``, network/registrar →
    ``network``, national CERT → ``cert``; ``followup`` when ``in_reply_to`` is given) unless
    ``template`` names one. A ``<name>.html.j2`` beside ``<name>.txt.j2`` adds an HTML
    alternative (autoescaped). A single finding carries an X-ARF v4 report (``xarf.json``);
    several carry a CSV of all findings (``findings.csv``) instead, since X-ARF is one incident
    per report.

    Raises ``TemplateError`` (unknown template, render failure, sandbox violation) and
    ``ConfigError`` (recipient or sender not an e-mail address, malformed Message-ID).
    """
    if not findings:
        raise ConfigError("nothing to compose: no findings")
    recipient = clean_address(contact.address)
    if recipient is None:
        raise ConfigError(f"not a deliverable e-mail address: {header_text(contact.address)!r}")
    sender_name, sender_address, sender_domain = _sender(settings)
    parent = _message_id_list([in_reply_to]) if in_reply_to else []
    followup = bool(parent)
    name = template_for(contact, template or ("followup" if followup else None))
    kind = name if name in ("owner", "network", "cert") else _ROLE_TEMPLATES[contact.role]

    single = len(findings) == 1
    attachments = {"csv": "" if single else "findings.csv", "xarf": "xarf.json" if single else ""}
    context = _context(
        findings,
        contact,
        kind,
        settings=settings,
        case_ref=case_ref,
        now=now,
        network=network,
        in_reply_to=parent[0] if parent else "",
        attachments=attachments,
    )
    env = _environment(str(Path(template_dir).resolve()) if template_dir else None)
    text = _render(env, f"{name}.txt.j2", context, required=True)
    html = _render(env, f"{name}.html.j2", context, required=False)
    assert text is not None
    text = _tidy(text)

    local = re.sub(r"[^a-z0-9-]", "", case_ref.lower()) or "notice"
    message_id = f"<{local}.{secrets.token_hex(8)}@{sender_domain}>"
    msg = EmailMessage(policy=_POLICY)
    try:
        msg["From"] = Address(display_name=sender_name, addr_spec=sender_address)
        msg["To"] = Address(display_name=_display_name(contact.name), addr_spec=recipient)
    except (ValueError, IndexError) as exc:
        raise ConfigError(f"cannot build an address header: {exc}") from None
    msg["Subject"] = _subject(findings, case_ref, followup)
    msg["Date"] = format_datetime(_utc(now))
    msg["Message-ID"] = message_id
    if parent:
        msg["In-Reply-To"] = parent[0]
    chain = _message_id_list(references) if references else []
    chain = list(dict.fromkeys([*chain, *parent]))
    if chain:
        msg["References"] = " ".join(chain)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Notifier-Case"] = header_text(case_ref, 64)
    if log_head:
        msg["X-Notifier-Log-Head"] = header_text(log_head, 200)

    msg.set_content(text, cte="quoted-printable")
    if html is not None:
        msg.add_alternative(html, subtype="html", cte="quoted-printable")
    if single:
        report = xarf_report(findings[0], settings=settings, case_ref=case_ref, now=now)
        msg.add_attachment(
            json.dumps(report, indent=2).encode("ascii"),
            maintype="application",
            subtype="json",
            filename=attachments["xarf"],
        )
    else:
        msg.add_attachment(
            findings_csv(findings),
            subtype="csv",
            filename=attachments["csv"],
            cte="quoted-printable",
        )

    raw = msg.as_bytes()
    _check_header_block(raw, msg)
    return ComposedMessage(
        message=msg,
        message_id=message_id,
        raw=raw,
        digest=hashlib.sha256(raw).hexdigest(),
        case_ref=case_ref,
        recipient=recipient,
        template=name,
    )
