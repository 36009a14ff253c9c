"""One RDAP ``ip network`` answer (RFC 9083 §5.4) into the network and its contacts. Pure: JSON
in, values out, no I/O.

AFRINIC publishes no roles at all, so an answer without any role says so in a note: the resolver
then asks WHOIS instead.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ...addresses import header_text
from ...errors import SourceProtocolError
from ...models import Contact, IPAddress, Network, Role
from .entities import contacts_from_entities, short_text, walk_entities

__all__ = ["SOURCE", "RDAPRecord", "guess_registry", "parse_rdap", "rate_limited"]

SOURCE = "rdap"
_MAX_CIDRS = 32
_MAX_ENTITY_FETCHES = 2
_RATE_LIMIT_TITLE = "rate limit notice"

# (domain suffix of port43 / link hosts, handle suffix, display name)
_REGISTRIES: tuple[tuple[str, str, str], ...] = (
    ("ripe.net", "-RIPE", "RIPE NCC"),
    ("arin.net", "-ARIN", "ARIN"),
    ("apnic.net", "-AP", "APNIC"),
    ("lacnic.net", "-LACNIC", "LACNIC"),
    ("afrinic.net", "-AFRINIC", "AFRINIC"),
)

_CONFIDENCE = {"abuse": 0.9, "noc": 0.5, "technical": 0.5, "registrant": 0.4}
_FALLBACK_ROLES = ("noc", "technical", "registrant")


def guess_registry(data: Mapping[str, Any]) -> str:
    """Which registry wrote ``data``: from ``port43``, link hosts, then handle suffixes."""
    hosts: list[str] = []
    port43 = data.get("port43")
    if isinstance(port43, str):
        hosts.append(port43.lower())
    links = data.get("links")
    for link in links[:50] if isinstance(links, list) else []:
        if isinstance(link, dict) and isinstance(link.get("href"), str):
            hosts.append((urlsplit(link["href"]).hostname or "").lower())
    for host in hosts:
        for suffix, _, name in _REGISTRIES:
            if host == suffix or host.endswith("." + suffix):
                return name
    handles = [data.get("handle")]
    entities = data.get("entities")
    if isinstance(entities, list):
        handles += [e.get("handle") for e in entities[:50] if isinstance(e, dict)]
    for handle in handles:
        if not isinstance(handle, str):
            continue
        upper = handle.upper()
        if upper.startswith(("NET-", "NET6-")):
            return "ARIN"
        for _, suffix, name in _REGISTRIES:
            if upper.endswith(suffix):
                return name
    return short_text(port43, 100) if isinstance(port43, str) and port43 else "unknown registry"


def _address(value: object) -> IPAddress | None:
    """An address from RIR spellings: ``074.125.000.000``, ``62.239.237.0/32``, padded IPv6."""
    if not isinstance(value, str) or len(value) > 100:
        return None
    text = value.strip().split("/", 1)[0]
    if "." in text and ":" not in text:
        parts = text.split(".")
        if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 for p in parts):
            return None
        text = ".".join(str(int(p)) for p in parts)
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _cidrs(data: Mapping[str, Any]) -> tuple[tuple[str, ...], str, str]:
    start, end = _address(data.get("startAddress")), _address(data.get("endAddress"))
    cidrs: list[str] = []
    cidr0 = data.get("cidr0_cidrs")
    if isinstance(cidr0, list):
        for item in cidr0[:_MAX_CIDRS]:
            if not isinstance(item, dict):
                continue
            prefix = item.get("v4prefix") or item.get("v6prefix")
            length = item.get("length")
            if isinstance(prefix, str) and isinstance(length, int):
                try:
                    cidrs.append(str(ipaddress.ip_network(f"{prefix}/{length}", strict=False)))
                except ValueError:
                    continue
    if not cidrs:
        span: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network] = ()
        if isinstance(start, ipaddress.IPv4Address) and isinstance(end, ipaddress.IPv4Address):
            span = ipaddress.summarize_address_range(start, end) if start <= end else ()
        elif isinstance(start, ipaddress.IPv6Address) and isinstance(end, ipaddress.IPv6Address):
            span = ipaddress.summarize_address_range(start, end) if start <= end else ()
        for network in span:
            cidrs.append(str(network))
            if len(cidrs) >= _MAX_CIDRS:
                break
    return (
        tuple(dict.fromkeys(cidrs)),
        str(start) if start is not None else "",
        str(end) if end is not None else "",
    )


def _asn(data: Mapping[str, Any]) -> int | None:
    for key in ("arin_originas0_originautnums", "originas0_originautnums"):
        values = data.get(key)
        if isinstance(values, list):
            for value in values:
                if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**32:
                    return value
    return None


def rate_limited(data: Mapping[str, Any]) -> bool:
    """A 200 that is really a refusal: some servers signal their limit as a notice."""
    notices = data.get("notices")
    return isinstance(notices, list) and any(
        isinstance(n, dict)
        and isinstance(n.get("title"), str)
        and n["title"].strip().lower() == _RATE_LIMIT_TITLE
        for n in notices[:50]
    )


@dataclass(frozen=True, slots=True)
class RDAPRecord:
    """What one RDAP ip network answer says: the network, the contacts and why."""

    network: Network
    contacts: tuple[Contact, ...] = ()
    notes: tuple[str, ...] = ()
    abuse_found: bool = False
    rate_limited: bool = False
    # handles of abuse entities published without a vCard, to fetch as entity/<handle>
    abbreviated: tuple[str, ...] = ()


def parse_rdap(
    data: Mapping[str, Any], *, resolved: Mapping[str, Mapping[str, Any]] | None = None
) -> RDAPRecord:
    """The network and its contacts from one RDAP ``ip network`` answer (RFC 9083 §5.4).

    Abuse-role e-mails at any depth are the contacts (confidence 0.9); only when there are none,
    the first of noc, technical, registrant that has one stands in at lower confidence.
    """
    if not isinstance(data, Mapping):
        raise SourceProtocolError("RDAP answer is not a JSON object", source=SOURCE)
    kind = data.get("objectClassName")
    if kind is not None and (not isinstance(kind, str) or kind.strip().lower() != "ip network"):
        raise SourceProtocolError(
            f"RDAP answer is a {header_text(kind, 40)!r}, not an ip network", source=SOURCE
        )
    notes: list[str] = []
    registry = guess_registry(data)
    entities = walk_entities(data, resolved=resolved, notes=notes)
    cidrs, start, end = _cidrs(data)
    registrant = next((e for e in entities if "registrant" in e.roles and e.fn), None)
    # where a letter goes: the registrant's address, else the abuse desk's
    by_post = next((e for e in entities if "registrant" in e.roles and e.postal), None) or next(
        (e for e in entities if "abuse" in e.roles and e.postal), None
    )
    country = data.get("country")
    network = Network(
        registry=registry,
        handle=short_text(data.get("handle"), 100),
        name=short_text(data.get("name"), 100),
        cidrs=cidrs,
        start=start,
        end=end,
        country=country.strip().upper()
        if isinstance(country, str) and len(country.strip()) == 2 and country.strip().isalpha()
        else "",
        org=registrant.fn if registrant else "",
        asn=_asn(data),
        postal_name=by_post.fn if by_post else "",
        postal=by_post.postal if by_post else (),
    )
    label = cidrs[0] if cidrs else network.handle or f"{start} - {end}"
    describe = f"{registry} RDAP"

    abuse = [e for e in entities if "abuse" in e.roles]
    contacts = contacts_from_entities(
        abuse,
        role=Role.NETWORK,
        confidence=_CONFIDENCE["abuse"],
        source=SOURCE,
        describe=f"abuse contact of {label}, {describe}",
        notes=notes,
    )
    abbreviated = tuple(e.handle for e in abuse if not e.has_vcard and e.handle)
    abbreviated = tuple(dict.fromkeys(abbreviated))[:_MAX_ENTITY_FETCHES]
    abuse_found = bool(contacts)
    if not abuse_found:
        if not entities:
            notes.append(f"{registry} RDAP answer for {label} lists no entities: no abuse contact")
        elif not any(e.roles for e in entities):
            notes.append(
                f"{registry} RDAP answer for {label} gives its entities no roles"
                " (AFRINIC style): no abuse contact; WHOIS should be asked"
            )
        elif abuse:
            notes.append(f"abuse entity of {label} at {registry} publishes no usable e-mail")
        else:
            notes.append(f"{registry} RDAP answer for {label} has no abuse role")
        for fallback in _FALLBACK_ROLES:
            holders = [e for e in entities if fallback in e.roles]
            found = contacts_from_entities(
                holders,
                role=Role.NETWORK,
                confidence=_CONFIDENCE[fallback],
                source=SOURCE,
                describe=f"{fallback} contact of {label} (no abuse contact published), {describe}",
                notes=notes,
            )
            if found:
                notes.append(f"using the {fallback} contact of {label} at lower confidence")
                contacts = found
                break
    return RDAPRecord(
        network=network,
        contacts=tuple(contacts),
        notes=tuple(dict.fromkeys(notes)),
        abuse_found=abuse_found,
        rate_limited=rate_limited(data),
        abbreviated=abbreviated,
    )
