"""WHOIS over port 43 for IP addresses: one parser per registry format, a bounded client, referrals.

Three layers:

- ``parse_whois(text, server)`` is pure: it recognises the format (RPSL from RIPE, AFRINIC, APNIC
  and the NIRs that mirror it; ARIN's ``Key: value`` blocks; LACNIC and registro.br; JPNIC's
  bracketed labels; KRNIC; TWNIC's ``Netname:`` layout; IANA) and returns a ``WhoisRecord``: the
  network, the contacts with the reason each was chosen, and where to ask next.
- ``query_whois(server, query, ctx)`` talks to one server: per-server query syntax and charset,
  a byte cap, a deadline, per-server politeness, and rate-limit answers turned into errors.
- ``lookup(query, ctx)`` is the source: it starts at the network's registry (or asks IANA), and
  follows referrals (ARIN ``ReferralServer``, APNIC stubs, NIR mirrors) with a hop limit and
  loop detection, keeping every raw answer's SHA-256 as evidence.

Registry data is hostile input: every address goes through ``addresses.clean_address`` (so a
value carrying CR/LF is refused whole, with a note), names go through ``header_text``, and the
registries' own hostmaster mailboxes are never taken for the network's contact.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Awaitable
from dataclasses import replace
from typing import Protocol

from ...errors import SourceError
from ...models import Contact, Evidence, Network, SourceReport
from .. import LookupContext, Query
from .client import _exchange, decode_answer, query_string, query_whois
from .fields import _HANDLE, _clip, _finish
from .parse import parse_whois
from .registries import (
    _MAX_HANDLE_QUERIES,
    ABUSE_CONFIDENCE,
    FALLBACK_CONFIDENCE,
    IANA_SERVER,
    SOURCE,
    STATED_CONFIDENCE,
    Referral,
    WhoisRecord,
    _canonical,
    registry_server,
)

__all__ = [
    "Referral",
    "WhoisRecord",
    "parse_whois",
    "decode_answer",
    "query_string",
    "registry_server",
    "query_whois",
    "lookup",
    "IANA_SERVER",
    "ABUSE_CONFIDENCE",
    "STATED_CONFIDENCE",
    "FALLBACK_CONFIDENCE",
]

# --------------------------------------------------------------------------- the source


class _Fetch(Protocol):
    def __call__(
        self, name: str, what: str, *, port: int | None = None
    ) -> Awaitable[WhoisRecord]: ...


def _start_server(query: Query) -> str | None:
    network = query.network
    if network is None or not network.registry:
        return None
    return registry_server(network.registry)


def _contains(network: Network, ip: str) -> bool | None:
    try:
        address = ipaddress.ip_address(ip)
        start = ipaddress.ip_address(network.start)
        end = ipaddress.ip_address(network.end)
    except ValueError:
        return None
    if address.version != start.version:
        return False
    return int(start) <= int(address) <= int(end)


async def lookup(query: Query, ctx: LookupContext) -> SourceReport:
    """The network and abuse contacts of the target from WHOIS, following referrals.

    Starts at the registry earlier stages named (``query.network.registry``), else asks IANA.
    Referrals are followed up to ``whois.max_referrals`` (the IANA bootstrap does not count),
    never back to a server already asked; rwhois is followed only to a configured override.
    Raises ``SourceError`` when the first server fails, or when a later one fails and nothing
    was found; otherwise failures become notes.
    """
    ip = str(query.target.ip)
    settings = ctx.settings.whois
    report = SourceReport(source=SOURCE)
    start = _start_server(query)
    if start is None:
        report.notes.append(f"no registry known for {ip}: asking {IANA_SERVER}")
    server = start or IANA_SERVER
    port: int | None = None
    ask = ip
    visited: set[str] = set()
    records: list[WhoisRecord] = []
    failure: SourceError | None = None
    followed = 0

    async def fetch(name: str, what: str, *, port: int | None = None) -> WhoisRecord:
        raw, text = await _exchange(name, what, ctx, port=port)
        record = parse_whois(text, name, query=ip)
        report.evidence.append(
            Evidence(
                source=SOURCE,
                locator=f"whois://{name}/{query_string(name, what)}",
                sha256=hashlib.sha256(raw).hexdigest(),
                fetched_at=ctx.clock(),
                detail=f"{len(raw)} bytes, {record.format} format",
            )
        )
        return record

    while True:
        visited.add(server)
        try:
            record = await fetch(server, ask, port=port)
        except SourceError as exc:
            if not records:
                raise
            failure = exc
            report.notes.append(f"referral to {server} failed: {exc}")
            break
        if record.contact_handles and not record.contacts:
            record = await _follow_handles(record, server, fetch, report)
        records.append(record)
        report.notes.extend(record.notes)
        referral = record.referral
        if referral is None:
            break
        target = _canonical(referral.server)
        overridden = target in settings.servers
        if referral.protocol == "rwhois" and not overridden:
            report.notes.append(
                f"{server} refers to rwhois://{target}:{referral.port or 4321}/;"
                " not followed (rwhois is followed only to a configured server)"
            )
            break
        if target in visited:
            report.notes.append(
                f"referral loop: {server} refers back to {target}, already asked; stopped"
            )
            break
        bootstrap = server == IANA_SERVER and len(records) == 1
        if not bootstrap:
            if followed >= settings.max_referrals:
                report.notes.append(
                    f"{server} refers to {target}; not followed, {settings.max_referrals}"
                    " referrals already followed (whois.max_referrals)"
                )
                break
            followed += 1
        report.notes.append(
            f"following referral from {server} to {target} ({referral.reason or 'referral'})"
        )
        server, port, ask = target, referral.port, referral.query or ip

    # an answer that only points elsewhere speaks for a registry, not for the network
    standing = [
        r
        for index, r in enumerate(records)
        if not (r.referral and r.referral.supersedes and index < len(records) - 1)
    ]
    # the most specific (last asked) server first; the sort is stable
    found = (c for record in reversed(standing) for c in record.contacts)
    report.contacts = list(_finish(found, report.notes))
    report.network = next((r.network for r in reversed(records) if r.network), None)
    if report.network is not None and _contains(report.network, ip) is False:
        report.notes.append(
            f"{report.network.registry} record {report.network.handle} does not contain {ip}"
        )
    if not report.contacts:
        if failure is not None:
            raise failure
        report.notes.append(f"no usable WHOIS contact for {ip}")
    return report


async def _follow_handles(
    record: WhoisRecord,
    server: str,
    fetch: _Fetch,
    report: SourceReport,
) -> WhoisRecord:
    """JPNIC lists contacts by handle: ask for each handle's record to get its e-mail."""
    contacts: dict[str, Contact] = {}
    for handle, role in record.contact_handles[:_MAX_HANDLE_QUERIES]:
        if not _HANDLE.match(handle):
            report.notes.append(f"{server}: ignored contact handle {_clip(handle, 40)!r}")
            continue
        try:
            found = await fetch(server, handle)
        except SourceError as exc:
            report.notes.append(f"{server}: contact record {handle} not fetched: {exc}")
            continue
        report.notes.extend(found.notes)
        for contact in found.contacts:
            described = replace(
                contact, provenance=tuple(f"{p}; {role}" for p in contact.provenance)
            )
            known = contacts.get(described.address)
            contacts[described.address] = known.merged(described) if known else described
        if not found.contacts:
            report.notes.append(f"{server}: contact record {handle} lists no usable e-mail")
    return replace(record, contacts=tuple(contacts.values()))
