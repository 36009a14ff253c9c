"""security.txt (RFC 9116): the owner's own word on where vulnerability reports go.

``lookup`` fetches ``https://<host>/.well-known/security.txt`` (then the legacy ``/security.txt``)
for each confirmed, non-generic host name of the target and for its registrable domain, over
HTTPS only, with a byte cap and a deadline, recording every redirect. Only a file that is valid,
unexpired and fetched from a URL its ``Canonical`` fields list gives contacts; a parent domain's
file is an organisational inference and is ranked lower (RFC 9116 §3.1 scopes a file to its exact
host). Its ``mailto:`` Contacts become mail contacts; every other Contact (a web form, ``tel:``,
another scheme) is kept as a ``Channel``, a manual step for the case, never replaced by a guess.

A host whose file *answered* — usable or not: expired, invalid, mis-canonical, served with a
certificate that does not verify, or too slow to arrive whole — is listed in
``SourceReport.answered``: the owner has published something, so no mailbox is guessed for it.
The format itself is parsed in ``securitytxt_format``.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass, field, replace
from itertools import pairwise
from urllib.parse import urlsplit

from ..addresses import clean_address, header_text
from ..errors import SourceProtocolError, SourceTimeout, SourceUnavailable
from ..models import Channel, ChannelKind, Contact, Evidence, Role, SourceReport
from ..net import UntrustedCertificate, fetch
from ..trust.sigcheck import signature_status
from . import LookupContext, Query
from .rdns import clean_hostname, is_generic_hosting_name, registrable_domain
from .securitytxt_format import (
    BLOCKING_ERRORS,
    MAX_FIELD_LENGTH,
    MAX_LINES,
    SOURCE,
    SecurityTxt,
    SecurityTxtError,
    parse_security_txt,
)

__all__ = [
    "SecurityTxt",
    "SecurityTxtError",
    "parse_security_txt",
    "security_txt_urls",
    "lookup",
    "SOURCE",
    "BLOCKING_ERRORS",
    "MAX_LINES",
    "MAX_FIELD_LENGTH",
    "MAX_CONTACTS",
]

WELL_KNOWN_PATH = "/.well-known/security.txt"
LEGACY_PATH = "/security.txt"
EXACT_CONFIDENCE = 0.9
PARENT_CONFIDENCE = 0.6
MAX_CONTACTS = 10  # of each kind (mailboxes, other channels) taken from one file
_MAX_HOSTS = 8
_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]{0,31}):", re.IGNORECASE)
# schemes that run code or read local files where a person clicks them: never offered
_REFUSED_SCHEMES = frozenset({"javascript", "vbscript", "data", "file", "blob", "about"})


def security_txt_urls(host: str, port: int = 443) -> tuple[str, str]:
    """The well-known and the legacy URL of ``host``'s security.txt."""
    authority = host if port == 443 else f"{host}:{port}"
    return f"https://{authority}{WELL_KNOWN_PATH}", f"https://{authority}{LEGACY_PATH}"


@dataclass(frozen=True, slots=True)
class _Host:
    name: str
    origin: str  # the target's host name this one stands for
    exact: bool  # False: a parent registrable domain (an organisational inference)


@dataclass(slots=True)
class _Outcome:
    contacts: list[Contact] = field(default_factory=list)
    channels: list[Channel] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    answered: bool = False


def _hosts(query: Query, notes: list[str]) -> list[_Host]:
    chosen: dict[str, _Host] = {}
    for raw in query.hostnames:
        host = clean_hostname(raw)
        if host is None:
            continue
        if is_generic_hosting_name(host, query.target.ip):
            notes.append(f"{host} is a generic hosting name: its security.txt is not looked up")
            continue
        chosen[host] = _Host(host, host, True)
    for exact in list(chosen.values()):
        parent = registrable_domain(exact.name)
        if parent and parent not in chosen:
            chosen[parent] = _Host(parent, exact.name, False)
    hosts = list(chosen.values())
    if len(hosts) > _MAX_HOSTS:
        notes.append(f"{len(hosts)} hosts; security.txt looked up for the first {_MAX_HOSTS}")
    return hosts[:_MAX_HOSTS]


def _content_type_problem(content_type: str, notes: list[str], url: str) -> str | None:
    """Why the declared type refuses the body (None: acceptable), noting lesser problems."""
    if not content_type:
        notes.append(f"{url}: no Content-Type (RFC 9116 wants text/plain; charset=utf-8)")
        return None
    media, _, params = content_type.partition(";")
    if media.strip().lower() != "text/plain":
        return f"Content-Type {header_text(media.strip(), limit=80)} is not text/plain"
    charset = ""
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    if not charset:
        notes.append(f"{url}: Content-Type has no charset (RFC 9116 wants charset=utf-8)")
    elif charset not in ("utf-8", "utf8", "us-ascii"):
        notes.append(f"{url}: charset {header_text(charset, limit=40)} declared; read as UTF-8")
    return None


def _unusable(file: SecurityTxt, where: str) -> str | None:
    """Why the file's contacts may not be used, or None when they may."""
    if "no_contact" in file.errors:
        return f"{where} has no Contact; not used"
    if "no_canonical_match" in file.errors:
        listed = ", ".join(header_text(c, limit=120) for c in file.canonical[:3])
        return (
            f"{where}: its Canonical fields ({listed}) do not list where it was fetched; "
            "not trusted, its contacts are not used"
        )
    if "expired" in file.errors and file.expires is not None:
        shown = ", ".join(header_text(c, limit=120) for c in file.contacts[:3])
        return (
            f"{where} exists but expired on {file.expires.date().isoformat()}; "
            f"its contacts ({shown}) are not used"
        )
    invalid = [code for code in file.errors if code in BLOCKING_ERRORS]
    if invalid:
        return f"{where} is invalid ({', '.join(invalid)}); its contacts are not used"
    return None


def _channel(uri: str, where: str, position: int, total: int, file: SecurityTxt) -> Channel | str:
    """A non-mail Contact as a channel, or why it is refused."""
    shown = header_text(uri, limit=120)
    scheme_match = _SCHEME.match(uri)
    if scheme_match is None:
        return f"{where}: Contact #{position} is not a URI: {shown}"
    scheme = scheme_match.group(1).lower()
    if scheme in _REFUSED_SCHEMES:
        return f"{where}: Contact #{position} refused: a {scheme}: URI is never offered"
    if scheme == "http":
        return f"{where}: Contact #{position} refused: not https: {shown}"
    kind = {"https": ChannelKind.WEB, "tel": ChannelKind.PHONE}.get(scheme, ChannelKind.OTHER)
    if kind is ChannelKind.WEB and not urlsplit(uri).hostname:
        return f"{where}: Contact #{position} refused: a web address without a host: {shown}"
    return Channel(
        kind=kind,
        uri=header_text(uri, limit=300),
        role=Role.OWNER,
        source=SOURCE,
        provenance=(f"{where}, Contact #{position} of {total}",),
        languages=file.preferred_languages,
    )


def _read_file(file: SecurityTxt, host: _Host, final_url: str, outcome: _Outcome) -> None:
    """Turn a parsed file into contacts, channels and notes (RFC 9116 §2.5 and §3.1)."""
    where = f"security.txt at {final_url}"
    notes = outcome.notes
    outcome.answered = True
    if file.signed:
        notes.append(f"{where} is OpenPGP-signed: {file.signature or 'signature not verified'}")
    lesser = [code for code in file.errors if code not in BLOCKING_ERRORS]
    if lesser:
        notes.append(f"{where} has problems: {', '.join(lesser)}")
    refused = _unusable(file, where)
    if refused is not None:
        notes.append(refused)
        return

    confidence = EXACT_CONFIDENCE if host.exact else PARENT_CONFIDENCE
    provenance_extra: list[str] = []
    if not host.exact:
        provenance_extra.append(
            f"parent-domain inference: {host.name}'s file used for {host.origin}"
        )
    final_host = clean_hostname(urlsplit(final_url).hostname or "") or ""
    if registrable_domain(final_host) != registrable_domain(host.name):
        confidence = min(confidence, PARENT_CONFIDENCE)
        provenance_extra.append(f"served from another domain ({final_host})")
    if file.signed:
        provenance_extra.append(f"signed; {file.signature or 'signature not verified'}")
    if file.expires is not None:
        provenance_extra.append(f"expires {file.expires.date().isoformat()}")

    total = len(file.contacts)
    skipped = 0
    for position, uri in enumerate(file.contacts, 1):
        lowered = uri.lower()
        if lowered.startswith("mailto:") or ("@" in uri and ":" not in uri.split("@", 1)[0]):
            if len(outcome.contacts) >= MAX_CONTACTS:
                skipped += 1
                continue
            address = clean_address(uri)
            if address is None:
                notes.append(f"{where}: Contact #{position} refused: {header_text(uri, 120)}")
                continue
            outcome.contacts.append(
                Contact(
                    address=address,
                    role=Role.OWNER,
                    sources=(SOURCE,),
                    confidence=confidence,
                    provenance=(f"{where}, Contact #{position} of {total}", *provenance_extra),
                    encryption=file.encryption[:5],
                    languages=file.preferred_languages[:8],
                )
            )
            continue
        if len(outcome.channels) >= MAX_CONTACTS:
            skipped += 1
            continue
        channel = _channel(uri, where, position, total, file)
        if isinstance(channel, str):
            notes.append(channel)
        else:
            outcome.channels.append(channel)
    if skipped:
        notes.append(
            f"{where}: {skipped} more Contact fields ignored (at most {MAX_CONTACTS} of each kind)"
        )
    for policy in file.policy[:3]:
        notes.append(f"policy: {header_text(policy, limit=300)}")
    if file.preferred_languages:
        notes.append(f"preferred languages: {header_text(', '.join(file.preferred_languages))}")
    for key in file.encryption[:3]:
        notes.append(f"encryption key: {header_text(key, limit=300)}")


async def _look_at(host: _Host, ctx: LookupContext) -> _Outcome:
    outcome = _Outcome()
    settings = ctx.settings.http
    for url in security_txt_urls(host.name, settings.https_port):
        try:
            result = await fetch(
                ctx.http,
                url,
                max_bytes=settings.security_txt_max_bytes,
                deadline=settings.timeout,
                accept="text/plain",
                max_redirects=settings.max_redirects,
                https_only=True,
                source=SOURCE,
            )
        except SourceTimeout as exc:
            # the file may be there and merely slow: the owner may have spoken, so nothing is
            # guessed in its place; a server too slow for one path is too slow for the other
            outcome.answered = True
            outcome.notes.append(
                f"security.txt of {host.name} did not arrive whole "
                f"({header_text(exc, limit=200)}); not used, and no mailbox is guessed"
            )
            outcome.failures.append(header_text(exc, limit=300))
            return outcome
        except UntrustedCertificate as exc:
            # the name serves HTTPS whose identity cannot be checked: whatever file it holds
            # cannot be read safely, yet the owner may have published one there
            outcome.answered = True
            outcome.notes.append(
                f"security.txt of {host.name} not read: {header_text(exc, limit=300)}; "
                "its contacts are not used, and no mailbox is guessed"
            )
            return outcome
        except SourceUnavailable as exc:
            # nothing listening on HTTPS is the common case, not a failure of this source
            outcome.notes.append(f"no security.txt from {host.name}: {header_text(exc, 300)}")
            return outcome
        except SourceProtocolError as exc:
            outcome.notes.append(header_text(exc, limit=300))
            outcome.failures.append(header_text(exc, limit=300))
            continue
        ctx.trace("securitytxt.fetch", {"url": url, "status": result.status, "chain": result.chain})
        for before, after in pairwise(result.chain):
            outcome.notes.append(f"redirect: {before} -> {header_text(after, limit=300)}")
            if registrable_domain(urlsplit(before).hostname or "") != registrable_domain(
                urlsplit(after).hostname or ""
            ):
                outcome.notes.append(f"{before} redirects to another domain: check it by hand")
        if result.status != 200:
            outcome.notes.append(f"{url}: HTTP {result.status}")
            continue
        refused = _content_type_problem(
            result.headers.get("content-type", ""), outcome.notes, result.url
        )
        if refused:
            outcome.notes.append(f"{result.url}: {refused}; not a security.txt")
            continue
        try:
            text = result.body.decode("utf-8")
        except UnicodeDecodeError:
            outcome.notes.append(f"{result.url}: not UTF-8; refused")
            continue
        try:
            parsed = parse_security_txt(
                text,
                url=url,
                now=ctx.clock(),
                max_bytes=settings.security_txt_max_bytes,
                chain=result.chain,
            )
        except SecurityTxtError as exc:
            if exc.statement:
                outcome.answered = True
                outcome.notes.append(f"{result.url}: {exc}; its contacts are not used")
                return outcome
            outcome.notes.append(f"{result.url}: {exc}")
            continue
        outcome.evidence.append(
            Evidence(
                source=SOURCE,
                locator=result.url,
                sha256=hashlib.sha256(result.body).hexdigest(),
                fetched_at=ctx.clock(),
                detail=header_text(
                    f"HTTP {result.status}, {len(result.body)} bytes"
                    + (f", via {' -> '.join(result.chain)}" if len(result.chain) > 1 else ""),
                    limit=1000,
                ),
            )
        )
        if url.endswith(LEGACY_PATH) and not url.endswith(WELL_KNOWN_PATH):
            outcome.notes.append(f"{host.name}: security.txt found only at the legacy location")
        if parsed.signed:
            status = await signature_status(
                result.body, result.url, parsed.encryption, parsed.contacts, ctx
            )
            parsed = replace(parsed, signature=status)
        _read_file(parsed, host, result.url, outcome)
        return outcome
    return outcome


async def lookup(query: Query, ctx: LookupContext) -> SourceReport:
    """Contacts and channels from the security.txt of the target's names and parent domains."""
    report = SourceReport(source=SOURCE)
    hosts = _hosts(query, report.notes)
    if not hosts:
        return report
    outcomes = await asyncio.gather(*(_look_at(host, ctx) for host in hosts))
    found: dict[str, Contact] = {}
    channels: dict[str, Channel] = {}
    failures: list[str] = []
    for host, outcome in zip(hosts, outcomes, strict=True):
        report.notes.extend(outcome.notes)
        report.evidence.extend(outcome.evidence)
        failures.extend(outcome.failures)
        if outcome.answered:
            report.answered.append(host.name)
        for contact in outcome.contacts:
            known = found.get(contact.address)
            found[contact.address] = contact if known is None else known.merged(contact)
        for channel in outcome.channels:
            channels.setdefault(channel.uri, channel)
    report.contacts = sorted(found.values(), key=lambda c: -c.confidence)
    report.channels = list(channels.values())
    if not report.contacts and failures:
        report.error = "; ".join(failures[:3])
    return report
