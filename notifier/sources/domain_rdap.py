"""RDAP for the domains behind a target's host names: the registrar's abuse desk, the registrant.

When the party running a host is best reached through its domain, the domain's registry RDAP
answer names the registrar, whose nested ``abuse`` entity the ICANN gTLD profile requires
(§2.4.5); the ``related`` link leads once to the registrar's own RDAP server, which usually
repeats that address. The registrant is a contact only when the answer does not redact it
(RFC 9537 ``redacted``, or "REDACTED" strings): a placeholder is never mailed. TLDs without
RDAP in the IANA ``dns.json`` bootstrap (many ccTLDs) are asked over port-43 WHOIS instead.

Layers as for IP RDAP: ``parse_domain_rdap`` and ``parse_domain_whois`` are pure, the fetching
goes through ``rdap.RDAPClient`` and ``net.tcp_exchange``, and ``lookup`` is the source.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from publicsuffixlist import PublicSuffixList

from .. import net
from ..addresses import clean_address, header_text
from ..errors import SourceError, SourceProtocolError, SourceUnavailable
from ..models import Contact, Evidence, Role, SourceReport
from . import LookupContext, Query, rdns
from .rdap import RDAPClient, contacts_from_entities, host_of, load_bootstrap, walk_entities

__all__ = [
    "DomainRecord",
    "registrable_domain",
    "registrable_domains",
    "parse_domain_rdap",
    "parse_domain_whois",
    "registrant_redacted",
    "whois_server",
    "lookup",
]

SOURCE = "domain-rdap"
WHOIS_SOURCE = "domain-whois"
MAX_DOMAINS = 5  # registrable domains looked up per target
REGISTRAR_CONFIDENCE = 0.5
REGISTRANT_CONFIDENCE = 0.6
WHOIS_CONFIDENCE = 0.4
_MAX_WHOIS_PARSE = 100_000

# ccTLD registries whose port-43 server is not whois.nic.<tld>
_WHOIS_SERVERS = {
    "de": "whois.denic.de",
    "nl": "whois.domain-registry.nl",
    "jp": "whois.jprs.jp",
    "br": "whois.registro.br",
    "eu": "whois.eu",
    "cn": "whois.cnnic.cn",
    "ca": "whois.cira.ca",
    "au": "whois.auda.org.au",
}


@functools.lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    # the one parsed list reverse DNS uses too: parsing it costs a tenth of a second
    return rdns.psl(only_icann=False)


def _ascii_name(name: str) -> str | None:
    text = name.strip().rstrip(".").lower()
    if not text or len(text) > 253 or any(ch.isspace() or ch in "/@:[]" for ch in text):
        return None
    try:
        ipaddress.ip_address(text)
        return None
    except ValueError:
        pass
    try:
        text = text.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    return text if "." in text else None


def registrable_domain(name: str) -> str | None:
    """The registrable domain of host ``name`` (``www.example.co.uk`` → ``example.co.uk``)."""
    ascii_name = _ascii_name(name)
    if ascii_name is None:
        return None
    found = _psl().privatesuffix(ascii_name)
    return found if isinstance(found, str) else None


def registrable_domains(names: Iterable[str], limit: int = MAX_DOMAINS) -> list[str]:
    """Distinct registrable domains of ``names``, in order, at most ``limit``."""
    found: list[str] = []
    for name in names:
        domain = registrable_domain(name)
        if domain and domain not in found:
            found.append(domain)
            if len(found) >= limit:
                break
    return found


@dataclass(frozen=True, slots=True)
class DomainRecord:
    """What one domain RDAP answer says about who can act on the domain."""

    domain: str
    registrar: str = ""
    contacts: tuple[Contact, ...] = ()
    related: tuple[str, ...] = ()  # the registrar's own RDAP answer for the domain
    notes: tuple[str, ...] = ()
    registrant_redacted: bool = False


def registrant_redacted(data: Mapping[str, Any]) -> bool:
    """Whether the answer withholds the registrant's e-mail (RFC 9537 ``redacted``)."""
    redacted = data.get("redacted")
    if not isinstance(redacted, list):
        return False
    for item in redacted[:100]:
        if not isinstance(item, dict):
            continue
        text = json.dumps(item, default=str)[:2000].lower()
        if "registrant" in text and ("email" in text or "vcardarray[1]" not in text):
            return True
    return False


def _links(data: Mapping[str, Any], rel: str) -> tuple[str, ...]:
    links = data.get("links")
    found: list[str] = []
    for link in links[:50] if isinstance(links, list) else []:
        if not isinstance(link, dict) or link.get("rel") != rel:
            continue
        href = link.get("href")
        kind = link.get("type")
        if (
            isinstance(href, str)
            and href.startswith(("https://", "http://"))
            and "/domain/" in href
            and len(href) < 2048
            and (kind is None or (isinstance(kind, str) and "json" in kind))
        ):
            found.append(href)
    return tuple(dict.fromkeys(found))


def parse_domain_rdap(data: Mapping[str, Any], domain: str, *, server: str = "") -> DomainRecord:
    """The registrar abuse desk and (unless redacted) the registrant from a domain answer."""
    if not isinstance(data, Mapping):
        raise SourceProtocolError("RDAP answer is not a JSON object", source=SOURCE)
    kind = data.get("objectClassName")
    if kind is not None and (not isinstance(kind, str) or kind.strip().lower() != "domain"):
        raise SourceProtocolError(
            f"RDAP answer is a {header_text(kind, 40)!r}, not a domain", source=SOURCE
        )
    notes: list[str] = []
    entities = walk_entities(data, notes=notes)
    registrar = next((e.fn for e in entities if "registrar" in e.roles and e.fn), "")
    where = f"{server} RDAP" if server else "RDAP"
    # the abuse desk nested in the registrar entity (gTLD profile), or a registry-level one
    abuse = [
        e for e in entities if "abuse" in e.roles and "registrant" not in e.ancestor_roles | e.roles
    ]
    label = f" ({registrar})" if registrar else ""
    contacts = contacts_from_entities(
        abuse,
        role=Role.REGISTRAR,
        confidence=REGISTRAR_CONFIDENCE,
        source=SOURCE,
        describe=f"registrar abuse contact for {domain}{label}, {where}",
        notes=notes,
    )
    if not contacts:
        notes.append(f"no registrar abuse e-mail for {domain} in {where}")
    redacted = registrant_redacted(data)
    registrants = [e for e in entities if "registrant" in e.roles]
    if redacted:
        notes.append(f"registrant of {domain} is redacted (RFC 9537): not contacted")
    else:
        shown = [e for e in registrants if "redacted" not in e.raw_fn.lower()]
        if len(shown) < len(registrants):
            notes.append(f"registrant of {domain} is marked REDACTED: not contacted")
        owner = contacts_from_entities(
            shown,
            role=Role.OWNER,
            confidence=REGISTRANT_CONFIDENCE,
            source=SOURCE,
            describe=f"registrant of {domain}, {where}",
            notes=notes,
        )
        contacts = _merge(contacts, owner)
    return DomainRecord(
        domain=domain,
        registrar=registrar,
        contacts=tuple(contacts),
        related=_links(data, "related"),
        notes=tuple(dict.fromkeys(notes)),
        registrant_redacted=redacted,
    )


def _merge(first: Iterable[Contact], second: Iterable[Contact]) -> list[Contact]:
    merged: dict[str, Contact] = {}
    for contact in [*first, *second]:
        known = merged.get(contact.address)
        merged[contact.address] = known.merged(contact) if known else contact
    return list(merged.values())


def parse_domain_whois(domain: str, text: str, *, server: str) -> tuple[list[Contact], list[str]]:
    """E-mails of a port-43 domain record (python-whois's parser), cleaned; plus notes."""
    from whois.parser import WhoisEntry  # imported late: a heavy module only this path needs

    notes: list[str] = []
    try:
        entry = WhoisEntry.load(domain, text)
        raw = entry.get("emails")
    except Exception as exc:  # a third-party parser on hostile text: translate whatever it raises
        notes.append(f"WHOIS record of {domain} at {server} not parsed: {type(exc).__name__}")
        return [], notes
    values = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    contacts: dict[str, Contact] = {}
    for value in values[:50]:
        if not isinstance(value, str):
            continue
        address = clean_address(value)
        if address is None:
            notes.append(f"dropped {header_text(value, 80)!r} from WHOIS of {domain}")
            continue
        contacts.setdefault(
            address,
            Contact(
                address=address,
                role=Role.REGISTRAR,
                sources=(WHOIS_SOURCE,),
                confidence=WHOIS_CONFIDENCE,
                provenance=(f"e-mail in the WHOIS record of {domain} at {server}",),
            ),
        )
    if not contacts:
        notes.append(f"WHOIS record of {domain} at {server} holds no usable e-mail")
    return list(contacts.values()), notes


def whois_server(tld: str, servers: Mapping[str, str]) -> tuple[str, str]:
    """(server name, key for ``WhoisSettings.endpoint``) of a TLD's port-43 service.

    ``whois.servers`` may map the TLD itself (``"de"`` or ``".de"``) or the server name to a
    ``host:port``.
    """
    name = _WHOIS_SERVERS.get(tld, f"whois.nic.{tld}")
    for key in (tld, f".{tld}"):
        if key in servers:
            return name, key
    return name, name


# --------------------------------------------------------------------------- the source


async def lookup(query: Query, ctx: LookupContext) -> SourceReport:
    """Registrar abuse desks and registrants of the domains of ``query.hostnames``."""
    report = SourceReport(source=SOURCE)
    domains = registrable_domains(query.hostnames)
    if not domains:
        report.notes.append("no registrable domain among the target's host names")
        return report
    failures: list[SourceError] = []
    for domain in domains:
        try:
            await _one(domain, ctx, report)
        except SourceError as exc:
            exc.target = exc.target or str(query.target.ip)
            exc.source = exc.source or SOURCE
            failures.append(exc)
            report.notes.append(f"domain {domain}: {exc}")
    if failures and len(failures) == len(domains):
        raise failures[0]
    return report


async def _one(domain: str, ctx: LookupContext, report: SourceReport) -> None:
    bootstrap = await load_bootstrap("dns", ctx, source=SOURCE)
    match = bootstrap.match_domain(domain)
    if match is None:
        await _whois(domain, ctx, report)
        return
    suffix, urls = match
    report.notes.append(f"RDAP bootstrap: {domain} is under {suffix}, served by {urls[0]}")
    client = RDAPClient(ctx, source=SOURCE)
    answer = await client.fetch(f"{urls[0]}domain/{quote(domain)}", report)
    if answer.status == 404:
        report.notes.append(f"{host_of(answer.final_url)} has no RDAP record for {domain} (404)")
        return
    if answer.status != 200 or answer.data is None:
        raise SourceUnavailable(f"{answer.final_url}: HTTP {answer.status}", source=SOURCE)
    record = parse_domain_rdap(answer.data, domain, server=_netloc(answer.final_url))
    report.notes.extend(record.notes)
    contacts = list(record.contacts)
    for related in record.related[:1]:  # once: a registrar's answer is not followed further
        if related.rstrip("/") == answer.final_url.rstrip("/"):
            continue
        try:
            second = await client.fetch(related, report)
        except SourceError as exc:
            report.notes.append(f"registrar RDAP for {domain} at {host_of(related)} failed: {exc}")
            continue
        if second.status != 200 or second.data is None:
            report.notes.append(f"registrar RDAP {related}: HTTP {second.status}")
            continue
        try:
            extra = parse_domain_rdap(second.data, domain, server=_netloc(second.final_url))
        except SourceProtocolError as exc:
            report.notes.append(f"registrar RDAP {related}: {exc}")
            continue
        report.notes.extend(extra.notes)
        contacts = _merge(contacts, extra.contacts)
    report.contacts = _merge(report.contacts, contacts)


async def _public_address(host: str, ctx: LookupContext) -> str:
    """The address to reach ``host`` at, refused unless public (the address policy).

    The server's name comes from the host name's TLD, that is from the data: without the check
    a name under an internal TLD would have us connect into the operator's own network. The
    address checked is the one connected to, so a second DNS answer cannot differ.
    """
    addresses = await net.resolve_host(ctx.resolver, host, ctx.bulk_dns)
    if not addresses:
        raise SourceUnavailable(f"{host} does not resolve", source=WHOIS_SOURCE)
    policy = net.AddressPolicy(ctx.settings.http.allow_private)
    refused = [a for a in addresses if not policy.allows(a)]
    if refused:
        raise SourceProtocolError(
            f"{host} resolves to a non-public address ({refused[0]}); refused",
            source=WHOIS_SOURCE,
        )
    return str(addresses[0])


async def _whois(domain: str, ctx: LookupContext, report: SourceReport) -> None:
    tld = domain.rsplit(".", 1)[-1]
    server, key = whois_server(tld, ctx.settings.whois.servers)
    host, port = ctx.settings.whois.endpoint(key)
    report.notes.append(f"no RDAP service for .{tld} in the bootstrap: asking WHOIS at {server}")
    if not ctx.settings.whois.servers.get(key.lower()):
        host = await _public_address(host, ctx)
    await ctx.limiter.wait(server)
    raw = await net.tcp_exchange(
        ctx.resolver,
        host,
        port,
        f"{domain}\r\n".encode("ascii"),
        max_bytes=ctx.settings.whois.max_bytes,
        deadline=ctx.settings.whois.timeout,
        source=WHOIS_SOURCE,
        bulk=ctx.bulk_dns,
    )
    report.evidence.append(
        Evidence(
            WHOIS_SOURCE,
            f"whois://{server}/{domain}",
            hashlib.sha256(raw).hexdigest(),
            ctx.clock(),
            f"{len(raw)} bytes from {host}:{port}",
        )
    )
    # a domain record is a few kilobytes; the parser's regular expressions get no more than this
    text = raw[:_MAX_WHOIS_PARSE].decode("utf-8", errors="replace")
    try:
        async with asyncio.timeout(ctx.settings.whois.timeout):
            contacts, notes = await asyncio.to_thread(
                parse_domain_whois, domain, text, server=server
            )
    except TimeoutError:
        report.notes.append(f"WHOIS record of {domain} at {server} took too long to parse")
        return
    report.notes.extend(notes)
    report.contacts = _merge(report.contacts, contacts)


def _netloc(url: str) -> str:
    # host and port: two registries on one host are still two sources
    return urlsplit(url).netloc.lower()
