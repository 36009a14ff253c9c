"""ARIN's ``Key: value`` blocks, customer blocks and ``ReferralServer``."""

from __future__ import annotations

import ipaddress
import re

from ...models import Contact
from .fields import _HOST, _asn, _clip, _Contacts, _finish, _network
from .registries import (
    _MAX_VALUE,
    _REGISTRIES,
    ABUSE_CONFIDENCE,
    FALLBACK_CONFIDENCE,
    STATED_CONFIDENCE,
    Referral,
    WhoisRecord,
    _canonical,
    registry_server,
)

__all__: list[str] = []  # internal: the package (sources.whois) is the surface

# --------------------------------------------------------------------------- ARIN

_ARIN_ABUSE = ("OrgAbuse", "RAbuse")
_ARIN_FALLBACK = ("OrgNOC", "RNOC", "OrgTech", "RTech")
_ALLOCATED_TO = re.compile(r"(?:Allocated|Transferred|Assigned) to (.{3,30})$", re.I)
_REFERRAL = re.compile(
    r"^(?:(?P<proto>r?whois)://)?(?P<host>[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])"
    r"(?::(?P<port>\d{1,5}))?/?$",
    re.I,
)


def _parse_referral_url(value: str, query: str, reason: str) -> Referral | None:
    match = _REFERRAL.match(value.strip())
    if not match:
        return None
    host = match.group("host").strip("[]").lower()
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOST.match(host):
            return None
    port = int(match.group("port")) if match.group("port") else None
    if port is not None and not 0 < port < 65536:
        return None
    protocol = (match.group("proto") or "whois").lower()
    canonical = _canonical(host)
    return Referral(
        server=canonical,
        query=query,
        port=port,
        protocol=protocol,
        reason=reason,
        supersedes=canonical in _REGISTRIES,
    )


def _parse_arin(lines: list[str], server: str, query: str) -> WhoisRecord:
    notes: list[str] = []
    sections: list[list[tuple[str, str]]] = []
    referral_value = ""
    for line in lines:
        if line.startswith("#") or not line.strip():
            continue
        match = re.match(r"^([A-Za-z][A-Za-z0-9-]{0,40}):[ \t]*(.*)$", line)
        if match is None:
            if line.lower().startswith("no match found"):
                notes.append(f"{server}: {_clip(line, 120)}")
            continue
        key, value = match.group(1), match.group(2).strip()[:_MAX_VALUE]
        if key == "NetRange" or not sections:
            sections.append([])
        sections[-1].append((key, value))
        if key == "ReferralServer":
            referral_value = value  # the last one: it belongs to the most specific network

    def field(section: list[tuple[str, str]], name: str) -> str:
        return next((v for k, v in section if k == name), "")

    blocks = [s for s in sections if field(s, "NetRange") or field(s, "CIDR")]
    network = None
    if blocks:
        last = blocks[-1]
        org = field(last, "OrgName") or field(last, "CustName")
        org = org or re.sub(r"\s*\([^)]*\)\s*$", "", field(last, "Organization"))
        org = org or re.sub(r"\s*\([^)]*\)\s*$", "", field(last, "Customer"))
        country = field(last, "Country") or next(
            (field(s, "Country") for s in reversed(blocks) if field(s, "Country")), ""
        )
        network = _network(
            "ARIN",
            field(last, "NetRange") or field(last, "CIDR").split(",")[0],
            handle=field(last, "NetHandle"),
            name=field(last, "NetName"),
            country=country,
            org=org,
            asn=_asn(field(last, "OriginAS")),
            cidrs=[c.strip() for c in field(last, "CIDR").split(",") if c.strip()],
        )

    def collect(section: list[tuple[str, str]]) -> tuple[Contact, ...]:
        found = _Contacts(server, notes)
        owner = field(section, "OrgId") or field(section, "CustName") or field(section, "NetHandle")
        handles: dict[str, str] = {}
        comments = [v for k, v in section if k == "Comment"]
        for key, value in section:
            prefix = key.removesuffix("Handle")
            if key.endswith("Handle"):
                handles[prefix] = value
            if not key.endswith("Email"):
                continue
            prefix = key.removesuffix("Email")
            what = f"{key} of {owner} ({handles.get(prefix, '?')})" if owner else key
            name = field(section, prefix + "Name")
            if prefix in _ARIN_ABUSE:
                found.add(value, ABUSE_CONFIDENCE, what, name)
            elif prefix in _ARIN_FALLBACK:
                found.add(value, FALLBACK_CONFIDENCE, what, name)
        for index, text in enumerate(comments):
            before = comments[index - 1] if index else ""
            found.add_from_text(text, STATED_CONFIDENCE, f"Comment of {owner}", before)
        return found.result()

    # the most specific block with contacts speaks; if it names no abuse desk, the nearest
    # enclosing block's abuse desk is added (a reassigned customer block often has none)
    chosen: list[Contact] = []
    for section in reversed(sections):
        contacts = collect(section)
        if not contacts:
            continue
        chosen.extend(
            contacts if not chosen else [c for c in contacts if c.confidence >= ABUSE_CONFIDENCE]
        )
        if any(c.confidence >= ABUSE_CONFIDENCE for c in chosen):
            break
    contacts_out = _finish(chosen, notes)

    referral = None
    if referral_value:
        referral = _parse_referral_url(referral_value, query, "ReferralServer")
        if referral is None:
            notes.append(f"{server}: unusable ReferralServer {_clip(referral_value, 80)!r}")
    allocated = _ALLOCATED_TO.search(field(blocks[-1], "NetType")) if blocks else None
    if referral is None and allocated is not None:
        target = registry_server(allocated.group(1))
        if target and target != _canonical(server):
            reason = f"NetType: {_clip(allocated.group(0), 60)}"
            referral = Referral(target, query, reason=reason, supersedes=True)
    return WhoisRecord(
        server=server,
        format="arin",
        registry="ARIN",
        network=network,
        contacts=contacts_out,
        referral=referral,
        notes=tuple(notes),
    )
