"""LACNIC and registro.br, JPNIC, KRNIC and TWNIC formats."""

from __future__ import annotations

import re

from .fields import (
    _EMAIL_IN_TEXT,
    _HANDLE,
    _asn,
    _clip,
    _Contacts,
    _has_control,
    _network,
    _parse_range,
)
from .registries import (
    _MAX_HANDLE_QUERIES,
    _MAX_VALUE,
    ABUSE_CONFIDENCE,
    FALLBACK_CONFIDENCE,
    STATED_CONFIDENCE,
    WhoisRecord,
)
from .rpsl import _most_specific, _objects

__all__: list[str] = []  # internal: the package (sources.whois) is the surface

# --------------------------------------------------------------------------- LACNIC / registro.br


def _parse_lacnic(lines: list[str], server: str, query: str, *, brazil: bool) -> WhoisRecord:
    objects, _comments = _objects(lines)
    notes: list[str] = []
    registry = "registro.br" if brazil else "LACNIC"
    found = _Contacts(server, notes, label=registry)
    people = {
        (o.get("nic-hdl") or o.get("nic-hdl-br")).upper(): o
        for o in objects
        if o.get("nic-hdl") or o.get("nic-hdl-br")
    }
    primary = _most_specific(objects, ("inetnum", "inet6num"))
    network = None
    if primary is not None:
        cidr = primary.attrs[0][1]
        parsed = _parse_range(cidr)
        network = _network(
            registry,
            cidr,
            handle=parsed[2][0] if parsed else cidr,
            name=primary.get("ownerid"),
            country=primary.get("country"),
            org=primary.get("owner"),
            asn=_asn(primary.get("aut-num")),
        )
        ladder = (
            ("abuse-c", ABUSE_CONFIDENCE),
            ("tech-c", FALLBACK_CONFIDENCE),
            ("owner-c", FALLBACK_CONFIDENCE),
        )
        for attr, confidence in ladder:
            for handle in primary.all(attr):
                person = people.get(handle.upper())
                if person is None:
                    found.note(f"{server}: {attr} {_clip(handle, 40)} has no contact block")
                    continue
                name = person.get("person")
                for value in person.all("e-mail"):
                    found.add(value, confidence, f"e-mail of {attr} {handle}", name)
    else:
        found.note(f"{server}: no inetnum in the answer")
    return WhoisRecord(
        server=server,
        format="lacnic",
        registry=registry,
        network=network,
        contacts=found.result(),
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------- JPNIC

_JP_LINE = re.compile(r"^\s*(?:[a-z]\.\s*)?\[([^\]]{1,40})\]\s*(.*)$")
_JP_LABELS = {
    "network number": "range",
    "ipネットワークアドレス": "range",
    "network name": "name",
    "ネットワーク名": "name",
    "organization": "org",
    "組織名": "org_ja",
    "administrative contact": "admin",
    "管理者連絡窓口": "admin",
    "technical contact": "tech",
    "技術連絡担当者": "tech",
    "abuse": "abuse",
    "e-mail": "email",
    "電子メイル": "email",
    "電子メール": "email",
    "reply mail": "reply",
    "返信アドレス": "reply",
    "jpnic handle": "handle",
    "jpnicハンドル": "handle",
    "last, first": "person",
    "氏名": "person_ja",
}


def _parse_jpnic(lines: list[str], server: str, query: str) -> WhoisRecord:
    notes: list[str] = []
    found = _Contacts(server, notes)
    values: dict[str, str] = {}
    handles: dict[str, list[str]] = {}
    for line in lines:
        if re.match(r"^\s*(Less|More) Specific Info", line, re.I) or "上位情報" in line:
            break  # other networks follow, listed without their contacts
        match = _JP_LINE.match(line)
        if not match:
            continue
        label = _JP_LABELS.get(match.group(1).strip().lower())
        value = match.group(2).strip()[:_MAX_VALUE]
        if label is None or not value:
            continue
        if label in ("admin", "tech"):
            role = "administrative contact" if label == "admin" else "technical contact"
            if _HANDLE.match(value):
                handles.setdefault(value.upper(), []).append(role)
            elif "@" in value:
                found.add(value, FALLBACK_CONFIDENCE, f"[{match.group(1)}]")
            continue
        if label == "abuse":
            found.add(value, ABUSE_CONFIDENCE, "[Abuse]")
            continue
        if label in ("email", "reply"):
            subject = values.get("handle", "")
            what = f"[{match.group(1)}] of JPNIC handle {subject}" if subject else match.group(1)
            who = values.get("person") or values.get("person_ja", "")
            found.add(value, FALLBACK_CONFIDENCE, what, who)
            continue
        values.setdefault(label, value)
    network = None
    if "range" in values:
        network = _network(
            "JPNIC",
            values["range"],
            name=values.get("name", ""),
            country="JP",
            org=values.get("org") or values.get("org_ja", ""),
        )
    network_name = values.get("name", "")
    pending = tuple(
        (
            handle,
            " and ".join(dict.fromkeys(roles)) + (f" of {network_name}" if network_name else ""),
        )
        for handle, roles in handles.items()
    )
    return WhoisRecord(
        server=server,
        format="jpnic",
        registry="JPNIC",
        network=network,
        contacts=found.result(),
        notes=tuple(notes),
        contact_handles=pending[:_MAX_HANDLE_QUERIES],
    )


# --------------------------------------------------------------------------- KRNIC

_KR_LABELS = {
    "ipv4address": "range",
    "ipv6address": "range",
    "ipv4주소": "range",
    "ipv6주소": "range",
    "organizationname": "org",
    "기관명": "org",
    "servicename": "name",
    "서비스명": "name",
    "networktype": "type",
    "네트워크구분": "type",
    "e-mail": "email",
    "email": "email",
    "전자우편": "email",
    "name": "person",
    "이름": "person",
}


def _parse_krnic(lines: list[str], server: str, query: str) -> WhoisRecord:
    notes: list[str] = []
    found = _Contacts(server, notes)
    english = next((i for i, line in enumerate(lines) if line.strip() == "# ENGLISH"), None)
    if english is not None:
        lines = lines[english:]
    networks: list[dict[str, str]] = []
    abuse_block = False
    person = ""
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            abuse_block = bool(re.search(r"abuse|어뷰즈", stripped, re.I))
            continue
        match = re.match(r"^\s*([^:\[\]]{1,40}?)\s*:\s*(.*)$", line)
        if not match:
            continue
        label = _KR_LABELS.get(re.sub(r"\s+", "", match.group(1)).lower())
        value = match.group(2).strip()[:_MAX_VALUE]
        if label == "range":
            networks.append({"range": value})
            abuse_block = False
        elif label == "person":
            person = value
            if re.search(r"abuse|어뷰즈", value, re.I):
                abuse_block = True
        elif label == "email":
            current = networks[-1] if networks else {}
            whose = current.get("org") or current.get("name") or "the network"
            where = current.get("range", "")
            what = f"e-mail of {whose} ({re.sub(r'[(].*?[)]', '', where).strip()})"
            confidence = ABUSE_CONFIDENCE if abuse_block else STATED_CONFIDENCE
            found.add(value, confidence, what if where else f"e-mail of {whose}", person)
        elif label and networks:
            networks[-1].setdefault(label, value)
    network = None
    if networks:
        last = networks[-1]
        # a customer block has no service name of its own: it runs on its ISP's service
        service = next((n["name"] for n in reversed(networks) if n.get("name")), "")
        network = _network(
            "KRNIC",
            last["range"],
            name=service,
            country="KR",
            org=last.get("org", ""),
        )
    return WhoisRecord(
        server=server,
        format="krnic",
        registry="KRNIC",
        network=network,
        contacts=found.result(),
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------- TWNIC (Netname:)

_TW_HEADING = re.compile(r"^\s*([A-Za-z][A-Za-z ]{1,40}):\s*$")


def _parse_twnic(lines: list[str], server: str, query: str) -> WhoisRecord:
    notes: list[str] = []
    found = _Contacts(server, notes)
    networks: list[dict[str, str]] = []
    block = ""
    for line in lines:
        keyed = re.match(r"^\s*(Netname|Netblock)\s*:\s*(\S.*)$", line, re.I)
        if keyed:
            key = keyed.group(1).lower()
            if key == "netname" or not networks:
                networks.append({})
            networks[-1][key] = keyed.group(2).strip()[:_MAX_VALUE]
            block = ""
            continue
        heading = _TW_HEADING.match(line)
        if heading:
            block = heading.group(1).strip().lower()
            continue
        if not line.strip():
            continue
        if not networks:
            continue
        if block == "registrant":
            networks[-1].setdefault("org", line.strip())
            if re.fullmatch(r"[A-Z]{2}", line.strip()):
                networks[-1]["country"] = line.strip()
        elif block.endswith("contact"):
            name = networks[-1].get("netname", "")
            what = f"{block} of {name}" if name else block
            confidence = ABUSE_CONFIDENCE if "abuse" in block else FALLBACK_CONFIDENCE
            if _has_control(line.strip()) and "@" in line:
                found.add(line.strip(), confidence, what)
                continue
            for match in _EMAIL_IN_TEXT.finditer(line):
                found.add(match.group(1), confidence, what)
    network = None
    if networks:
        last = networks[-1]
        network = _network(
            "TWNIC",
            last.get("netblock", ""),
            name=last.get("netname", ""),
            country=last.get("country", "TW"),
            org=last.get("org", ""),
        )
    return WhoisRecord(
        server=server,
        format="twnic",
        registry="TWNIC",
        network=network,
        contacts=found.result(),
        notes=tuple(notes),
    )
