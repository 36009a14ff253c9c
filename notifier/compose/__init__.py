"""Render a disclosure e-mail from findings and a contact: bytes ready for SMTP, and their digest.

The package: ``library`` (templates, sentences per language, exposure guides: loaded and checked
once), ``languages`` (which language and why), ``context`` (what templates see), ``guides`` (which
guide for which finding), ``mime`` (headers, MIME tree, the bytes), ``xarf`` (X-ARF and CSV).

Templates run in Jinja's immutable sandbox with ``StrictUndefined``: a user's template can neither
reach Python internals nor silently print an empty variable.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from ..addresses import clean_address, header_text
from ..config import Settings
from ..errors import ConfigError, TemplateError
from ..models import Contact, Finding, Network, Role
from .context import base_context, sender_parts, utc
from .guides import guide_context
from .languages import LanguageChoice, choose_language
from .library import Library, load
from .mime import (
    POLICY,
    ComposedMessage,
    display_name,
    message_id_list,
    no_encoded_words,
    seal,
)
from .render import render_frame, sentences
from .xarf import XARF_VERSION, findings_csv, xarf_report

__all__ = [
    "XARF_VERSION",
    "ComposedMessage",
    "Library",
    "LanguageChoice",
    "build_message",
    "check_template",
    "choose_language",
    "compose",
    "findings_csv",
    "library_for",
    "load",
    "seal",
    "template_for",
    "xarf_report",
]

_ROLE_TEMPLATES = {
    Role.OVERRIDE: "owner",
    Role.OWNER: "owner",
    Role.NETWORK: "network",
    Role.REGISTRAR: "network",
    Role.NATIONAL_CERT: "cert",
}
_TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


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


def check_template(settings: Settings, template: str | None) -> None:
    """Refuse a ``--template`` that names no frame before anything is looked up or sent."""
    if template is None:
        return
    name = template.removesuffix(".txt.j2")
    if not _TEMPLATE_NAME.match(name):
        raise TemplateError(
            f"template name must be a bare name like 'owner' or 'owner.txt.j2': {template!r}"
        )
    frames = library_for(settings).frames()
    if name not in frames:
        raise TemplateError(f"no template {name!r}; there are: {', '.join(frames)}")


def library_for(settings: Settings, template_dir: str | os.PathLike[str] | None = None) -> Library:
    """The loaded templates: ``template_dir`` if given, else ``[templates] dir``, over ours."""
    folder = template_dir or settings.templates.dir or None
    return load(str(Path(folder).expanduser().resolve()) if folder else None)


def _subject(findings: Sequence[Finding], case_ref: str, followup: bool) -> str:
    ips = list(dict.fromkeys(str(f.ip) for f in findings))
    if len(findings) == 1:
        text = f"Exposed service on {ips[0]}: {header_text(findings[0].text, 120)}"
    elif len(ips) == 1:
        text = f"Exposed services on {ips[0]} ({len(findings)} findings)"
    else:
        text = f"Exposed services on {len(ips)} addresses"
    subject = f"[{header_text(case_ref, 40)}] {text}"
    return display_subject(("Re: " if followup else "") + subject)


def display_subject(text: str) -> str:
    """A Subject value: one bounded line, no format marks, nothing shaped like an encoded word."""
    cleaned = "".join(c for c in header_text(text, 250) if not _is_format_mark(c))
    return no_encoded_words(cleaned)


def _is_format_mark(char: str) -> bool:
    return unicodedata.category(char) == "Cf"


def build_message(
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
    language: str | None = None,
) -> tuple[EmailMessage, dict[str, Any]]:
    """The finished ``EmailMessage`` (not yet bytes) and the fields ``seal`` records with it."""
    if not findings:
        raise ConfigError("nothing to compose: no findings")
    recipient = clean_address(contact.address)
    if recipient is None:
        raise ConfigError(f"not a deliverable e-mail address: {header_text(contact.address)!r}")
    sender_name, sender_address, sender_domain = sender_parts(settings)
    parent = message_id_list([in_reply_to]) if in_reply_to else []
    followup = bool(parent)
    name = template_for(contact, template or ("followup" if followup else None))
    kind = name if name in ("owner", "network", "cert") else _ROLE_TEMPLATES[contact.role]
    library = library_for(settings, template_dir)
    wanted = [language] if language else contact.languages
    choice = choose_language(wanted, library.languages)
    if language and choice.tag != language.split("-")[0].lower():
        raise ConfigError(
            f"no translation for language {header_text(language, 35)!r} "
            f"(available: {', '.join(library.languages)})"
        )
    if language:
        choice = LanguageChoice(choice.tag, "chosen by the sender")

    single = len(findings) == 1
    attachments = {"csv": "" if single else "findings.csv", "xarf": "xarf.json" if single else ""}
    context = base_context(
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
    context["language"] = choice.tag
    context["t"] = sentences(library, choice.tag, context)
    context["guides"] = guide_context(library, findings, choice.tag)
    text, html = render_frame(library, name, context)

    local = re.sub(r"[^a-z0-9-]", "", case_ref.lower()) or "notice"
    message_id = f"<{local}.{secrets.token_hex(8)}@{sender_domain}>"
    msg = EmailMessage(policy=POLICY)
    try:
        msg["From"] = Address(display_name=sender_name, addr_spec=sender_address)
        msg["To"] = Address(display_name=display_name(contact.name), addr_spec=recipient)
    except (ValueError, IndexError) as exc:
        raise ConfigError(f"cannot build an address header: {exc}") from None
    msg["Subject"] = _subject(findings, case_ref, followup)
    msg["Date"] = format_datetime(utc(now))
    msg["Message-ID"] = message_id
    if parent:
        msg["In-Reply-To"] = parent[0]
    chain = message_id_list(references) if references else []
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
    # after the body: set_content() drops every Content-* header it finds
    msg["Content-Language"] = choice.tag
    untranslated = [g["name"] for g in context["guides"] if g["language"] != choice.tag]
    reason = choice.reason
    if untranslated:
        reason += f"; guide {', '.join(untranslated)} in English (no {choice.tag} translation)"
    fields: dict[str, Any] = {
        "message_id": message_id,
        "case_ref": case_ref,
        "recipient": recipient,
        "template": name,
        "language": choice.tag,
        "language_reason": reason,
        "guides": tuple(g["name"] for g in context["guides"]),
    }
    return msg, fields


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
    language: str | None = None,
) -> ComposedMessage:
    """Render the disclosure about ``findings`` for ``contact``.

    The frame is chosen by the contact's role (owner/override → ``owner``, network/registrar →
    ``network``, national CERT → ``cert``; ``followup`` when ``in_reply_to`` is given) unless
    ``template`` names one; the language by the contact's preferred languages (or ``language``);
    one exposure guide per service found. The plain text comes first, an HTML alternative
    (``<name>.html.j2``) follows. A single finding carries an X-ARF v4 report (``xarf.json``);
    several carry a CSV of all findings (``findings.csv``), since X-ARF is one incident a report.

    Raises ``TemplateError`` (unknown template, render failure, sandbox violation) and
    ``ConfigError`` (recipient or sender not an e-mail address, malformed Message-ID).
    """
    msg, fields = build_message(
        findings,
        contact,
        settings=settings,
        template=template,
        case_ref=case_ref,
        now=now,
        log_head=log_head,
        in_reply_to=in_reply_to,
        references=references,
        network=network,
        template_dir=template_dir,
        language=language,
    )
    return seal(msg, **fields)
