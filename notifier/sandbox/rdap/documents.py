"""RDAP JSON as registries write it: networks (ARIN's and RIPE's shapes, AFRINIC's roleless one),
domains in the ICANN gTLD profile's shape, entities with jCards, and IANA bootstrap files."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "REGISTRY_PORT43",
    "bootstrap_json",
    "domain_json",
    "entity_json",
    "network_json",
]

# display name -> (port43 server, handle suffix)
REGISTRY_PORT43: dict[str, tuple[str, str]] = {
    "ARIN": ("whois.arin.net", "-ARIN"),
    "RIPE NCC": ("whois.ripe.net", "-RIPE"),
    "APNIC": ("whois.apnic.net", "-AP"),
    "LACNIC": ("whois.lacnic.net", "-LACNIC"),
    "AFRINIC": ("whois.afrinic.net", "-AFRINIC"),
}

_REGISTRANT_EMAIL_PATH = "$.entities[?(@.roles[0]=='registrant')].vcardArray[1][?(@[0]=='email')]"


def entity_json(
    handle: str,
    roles: Sequence[str],
    *,
    fn: str = "",
    emails: Sequence[str] = (),
    kind: str = "individual",
    entities: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """An RDAP entity with a jCard (RFC 7095) holding ``fn`` and ``emails`` (first preferred)."""
    card: list[list[Any]] = [["version", {}, "text", "4.0"], ["fn", {}, "text", fn or handle]]
    card.append(["kind", {}, "text", kind])
    for number, email in enumerate(emails, start=1):
        card.append(["email", {"pref": str(number)}, "text", email])
    data: dict[str, Any] = {
        "objectClassName": "entity",
        "handle": handle,
        "roles": list(roles),
        "vcardArray": ["vcard", card],
    }
    if entities:
        data["entities"] = list(entities)
    return data


def network_json(
    cidr: str,
    handle: str,
    name: str = "",
    country: str = "",
    abuse_email: str | Sequence[str] = "",
    registry: str = "RIPE NCC",
    nested: bool = False,
    *,
    org: str = "",
    asn: int | None = None,
    technical_email: str = "",
    roles: bool = True,
) -> dict[str, Any]:
    """RDAP JSON for a synthetic network, shaped like ``registry`` answers.

    ``nested=True`` puts the abuse POC inside the registrant org entity (ARIN's shape);
    ``nested=False`` makes it a top-level role object (RIPE's shape); ``roles=False`` leaves
    every entity without roles, as AFRINIC does, so no abuse contact can be told apart.
    """
    network = ipaddress.ip_network(cidr, strict=False)
    port43, suffix = REGISTRY_PORT43.get(registry, ("whois.example", "-SANDBOX"))
    emails = [abuse_email] if isinstance(abuse_email, str) else list(abuse_email)
    emails = [e for e in emails if e]
    org_name = org or f"{name or handle} Org"
    abuse = entity_json(f"AB1{suffix}", ["abuse"], fn=f"{org_name} abuse desk", emails=emails)
    technical = (
        [entity_json(f"TC1{suffix}", ["technical"], fn="NOC", emails=[technical_email])]
        if technical_email
        else []
    )
    if nested:
        registrant = entity_json(
            f"ORG1{suffix}",
            ["registrant"],
            fn=org_name,
            kind="org",
            entities=([abuse] if emails else []) + technical,
        )
        entities = [registrant]
    else:
        registrant = entity_json(f"ORG1{suffix}", ["registrant"], fn=org_name, kind="org")
        entities = ([abuse] if emails else []) + technical + [registrant]
    prefix_key = "v4prefix" if network.version == 4 else "v6prefix"
    data: dict[str, Any] = {
        "objectClassName": "ip network",
        "rdapConformance": ["rdap_level_0", "cidr0"],
        "handle": handle,
        "name": name or handle,
        "startAddress": str(network.network_address),
        "endAddress": str(network.broadcast_address),
        "ipVersion": f"v{network.version}",
        "cidr0_cidrs": [{prefix_key: str(network.network_address), "length": network.prefixlen}],
        "port43": port43,
        "entities": entities,
    }
    if not roles:
        _strip_roles(entities)
    if country:
        data["country"] = country
    if asn is not None:
        data["arin_originas0_originautnums"] = [asn]
    return data


def _strip_roles(entities: list[dict[str, Any]]) -> None:
    for entity in entities:
        entity.pop("roles", None)
        _strip_roles(entity.get("entities", []))


def domain_json(
    name: str,
    *,
    registrar: str = "Sandbox Registrar",
    registrar_iana_id: str = "9999",
    registrar_abuse_email: str = "",
    registrant_email: str = "",
    redacted: bool = False,
    related: str = "",
) -> dict[str, Any]:
    """RDAP JSON for a domain in the ICANN gTLD profile's shape.

    The registrar entity carries a nested abuse entity; ``redacted=True`` withholds the
    registrant as RFC 9537 describes; ``related`` links to the registrar's own RDAP answer.
    """
    abuse = entity_json(
        f"{registrar_iana_id}-ABUSE",
        ["abuse"],
        fn=f"{registrar} abuse",
        emails=[registrar_abuse_email] if registrar_abuse_email else [],
    )
    registrar_entity = entity_json(
        registrar_iana_id, ["registrar"], fn=registrar, kind="org", entities=[abuse]
    )
    registrar_entity["publicIds"] = [{"type": "IANA Registrar ID", "identifier": registrar_iana_id}]
    entities: list[dict[str, Any]] = [registrar_entity]
    conformance = ["rdap_level_0", "icann_rdap_response_profile_1"]
    data: dict[str, Any] = {"objectClassName": "domain", "ldhName": name}
    if redacted:
        conformance.append("redacted")
        entities.append(entity_json("", ["registrant"], fn="REDACTED FOR PRIVACY"))
        entities[-1]["vcardArray"][1] = [
            p for p in entities[-1]["vcardArray"][1] if p[0] != "email"
        ]
        data["redacted"] = [
            {
                "name": {"type": "Registrant Email"},
                "prePath": _REGISTRANT_EMAIL_PATH,
                "method": "removal",
            }
        ]
    elif registrant_email:
        entities.append(
            entity_json("REG-1", ["registrant"], fn="Registrant", emails=[registrant_email])
        )
    data["rdapConformance"] = conformance
    data["entities"] = entities
    if related:
        data["links"] = [
            {"rel": "related", "type": "application/rdap+json", "href": related, "value": related}
        ]
    return data


def bootstrap_json(services: Iterable[tuple[Sequence[str], Sequence[str]]]) -> dict[str, Any]:
    """An IANA bootstrap document (RFC 9224) for ``(entries, base URLs)`` services."""
    return {
        "version": "1.0",
        "publication": "2025-01-01T00:00:00Z",
        "description": "notifier sandbox bootstrap",
        "services": [[list(entries), list(urls)] for entries, urls in services if entries],
    }
