"""Domain objects rebuilt from stored records: findings, contacts, networks, ladder levels.

Records written by every version of the tool are read back here, bounded and cleaned (a
hand-edited or damaged log must not make one case rebuild into millions of findings). An intent
carries its findings structured (``findings``) since they became re-sendable; earlier versions
wrote only ``finding_texts`` lines (``"ip:port text"``), which are parsed back.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from ..addresses import clean_address, header_text
from ..models import Contact, Finding, Network, Role
from .chain import Record
from .records import Intent

__all__ = [
    "LEVELS",
    "contact_of",
    "findings_of",
    "level_of",
    "network_of",
    "verp_id",
]

LEVELS: tuple[str, ...] = ("owner", "network", "cert")
"""The rungs of the escalation ladder, lowest first."""

_LEVEL_OF_ROLE = {
    Role.OVERRIDE: "owner",
    Role.OWNER: "owner",
    Role.NETWORK: "network",
    Role.REGISTRAR: "network",
    Role.NATIONAL_CERT: "cert",
}
# a hand-edited or damaged log must not make one case rebuild into millions of findings
_MAX_FINDINGS_PER_INTENT = 10_000


def level_of(role: object) -> str | None:
    """The ladder level of a contact role (``"owner"``, ``"network"``, ``"cert"``), or None."""
    try:
        return _LEVEL_OF_ROLE[Role(str(role))]
    except ValueError:
        return None


def verp_id(message_id: str, recipient: str) -> str:
    """The VERP id ``deliver.envelope_sender`` puts in the return path of this message.

    ``message_id`` with or without its angle brackets; the id is made over the bracketed form.
    """
    bare = message_id.strip().strip("<>")
    seed = f"<{bare}>|{clean_address(recipient) or recipient}".encode()
    return hashlib.sha256(seed).hexdigest()[:12]


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _string(value: object, limit: int = 500) -> str:
    return header_text(value, limit) if isinstance(value, str) else ""


def _finding(item: object) -> Finding | None:
    if not isinstance(item, dict):
        return None
    text = item.get("text")
    port = item.get("port")
    hostname = item.get("hostname")
    extra = item.get("extra")
    service = item.get("service")
    try:
        ip = ipaddress.ip_address(str(item.get("ip", "")))
    except ValueError:
        return None
    if not isinstance(text, str) or not text:
        return None
    pairs: list[tuple[str, str]] = []
    if isinstance(extra, list):
        for pair in extra:
            if isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair):
                pairs.append((pair[0], pair[1]))
    return Finding(
        ip,
        text,
        port=port if isinstance(port, int) and not isinstance(port, bool) else None,
        hostname=hostname if isinstance(hostname, str) and hostname else None,
        observed_at=_time(item.get("observed_at")),
        extra=tuple(pairs),
        service=service if isinstance(service, str) and service else None,
    )


def _finding_from_text(line: object) -> Finding | None:
    """A finding from an older intent's ``"ip:port text"`` line (port may be empty)."""
    if not isinstance(line, str):
        return None
    where, _, text = line.partition(" ")
    # rpartition: an IPv6 address holds colons of its own, the port is after the last one
    address, _, port = where.rpartition(":")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if not text or (port and not port.isdigit()):
        return None
    return Finding(ip, text, port=int(port) if port else None)


def _sources(record: Record | Intent) -> tuple[object, object]:
    if isinstance(record, Intent):
        written = "findings" in record.model_fields_set  # absent: an older intent, texts only
        return (record.findings if written else None), record.finding_texts
    return record.get("findings"), record.get("finding_texts")


def findings_of(record: Record | Intent) -> list[Finding]:
    """The findings an intent was about (structured ``findings``, else ``finding_texts``)."""
    structured, texts = _sources(record)
    if isinstance(structured, list):
        items = [_finding(item) for item in structured[:_MAX_FINDINGS_PER_INTENT]]
    else:
        lines = texts[:_MAX_FINDINGS_PER_INTENT] if isinstance(texts, list) else []
        items = [_finding_from_text(line) for line in lines]
    return [f for f in items if f is not None]


def contact_of(item: object) -> Contact | None:
    """A contact as a resolution record holds it, or None if it is not one."""
    if not isinstance(item, dict):
        return None
    address = clean_address(str(item.get("address", "")))
    try:
        role = Role(str(item.get("role", "")))
    except ValueError:
        return None
    if address is None:
        return None
    confidence = item.get("confidence")
    sources = item.get("sources")
    provenance = item.get("provenance")
    return Contact(
        address=address,
        role=role,
        sources=tuple(_string(s, 100) for s in sources if isinstance(s, str))
        if isinstance(sources, list)
        else (),
        confidence=float(confidence) if isinstance(confidence, int | float) else 0.0,
        provenance=tuple(_string(p) for p in provenance if isinstance(p, str))
        if isinstance(provenance, list)
        else (),
        name=_string(item.get("name"), 200),
    )


def network_of(value: object) -> Network | None:
    """The network a resolution record names, or None when it names none (or not readably)."""
    if not isinstance(value, dict):
        return None
    known = {f.name for f in fields(Network)}
    values: dict[str, Any] = {}
    for name, item in value.items():
        if name not in known:
            continue
        if name == "cidrs":
            values[name] = tuple(str(c) for c in item) if isinstance(item, list) else ()
        elif name == "asn":
            values[name] = item if isinstance(item, int) and not isinstance(item, bool) else None
        else:
            values[name] = _string(item)
    if "registry" not in values:
        return None
    return Network(**values)
