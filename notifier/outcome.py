"""What a send produced, and how domain objects are written into the audit log's records."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .compose import ComposedMessage
from .errors import EXIT_FAILED, EXIT_HELD_BACK, EXIT_OK
from .ladder import held_back, settles
from .models import Channel, Contact, Delivery, DeliveryStatus, Evidence, Resolution, Role
from .sources.rdns import SOURCE as RDNS

__all__ = [
    "SendResult",
    "address_record",
    "channel_record",
    "contact_record",
    "resolution_record",
    "shared_evidence",
]

# evidence about one address alone: its PTR answer. The rest (the network's RDAP answer, a
# domain's security.txt) holds for every address that resolved through it.
_OWN_EVIDENCE = frozenset({RDNS})


def contact_record(contact: Contact) -> dict[str, Any]:
    """A contact as the audit log and ``resolve --json`` show it."""
    return {
        "address": contact.address,
        "sources": list(contact.sources),
        "role": str(contact.role),
        "confidence": round(contact.confidence, 2),
        "provenance": list(contact.provenance),
        "name": contact.name,
    }


def channel_record(channel: Channel) -> dict[str, Any]:
    """A non-mail channel as the audit log and ``resolve --json`` show it."""
    return {
        "kind": str(channel.kind),
        "uri": channel.uri,
        "role": str(channel.role),
        "source": channel.source,
        "provenance": list(channel.provenance),
        "languages": list(channel.languages),
    }


def resolution_record(resolution: Resolution) -> dict[str, Any]:
    """The fields of the audit log's ``resolution`` record for ``resolution``."""
    return {
        "ip": str(resolution.target.ip),
        "hostnames": list(resolution.hostnames),
        "network": asdict(resolution.network) if resolution.network else None,
        "recipients": [contact_record(c) for c in resolution.recipients],
        "fallbacks": [contact_record(c) for c in resolution.fallbacks],
        "errors": [{"source": s, "error": e} for s, e in resolution.errors],
        "channels": [channel_record(c) for c in resolution.channels],
        "hints": [asdict(h) for h in resolution.hints],
        "evidence": [_evidence(e) for e in resolution.evidence],
    }


def address_record(resolution: Resolution) -> dict[str, Any]:
    """One more address a batch's ``resolution`` record holds for: its own host names and the
    evidence about it alone (``_OWN_EVIDENCE``); the record's other evidence is its too."""
    return {
        "ip": str(resolution.target.ip),
        "hostnames": list(resolution.hostnames),
        "evidence": [_evidence(e) for e in resolution.evidence if e.source in _OWN_EVIDENCE],
    }


def shared_evidence(resolution: Resolution) -> tuple[tuple[str, str, str], ...]:
    """What a record says of the evidence that is not one address's alone (not when each
    answer came): addresses alike in this and the rest share a record."""
    kept = (e for e in resolution.evidence if e.source not in _OWN_EVIDENCE)
    return tuple((e.source, e.locator, e.sha256) for e in kept)


def _evidence(evidence: Evidence) -> dict[str, str]:
    return {"source": evidence.source, "locator": evidence.locator, "sha256": evidence.sha256}


@dataclass(slots=True)
class SendResult:
    """What happened to one target's findings."""

    resolution: Resolution | None = None  # None for a batch, which has one per address
    deliveries: list[Delivery] = field(default_factory=list)
    messages: list[ComposedMessage] = field(default_factory=list)
    # reports prepared for channels that are not e-mail (web forms, phone): (channel, path)
    manual: list[tuple[str, str]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Nobody could be told: no contact at all, or a delivery failed and nothing later on the
        ladder took the report in its place (reached it, or holds it for a later run)."""
        statuses = [d.status for d in self.deliveries]
        if not statuses and self.resolution is not None:
            return True  # nobody at all could be found to tell
        if DeliveryStatus.FAILED not in statuses:
            return False
        last_failure = max(i for i, s in enumerate(statuses) if s == DeliveryStatus.FAILED)
        return not any(
            d.role in (Role.REGISTRAR, Role.NATIONAL_CERT) and settles(d.status)
            for d in self.deliveries[last_failure + 1 :]
        )

    @property
    def held_back(self) -> list[Delivery]:
        """Messages a sending limit held back: a later run sends them."""
        return held_back(self.deliveries)

    @property
    def exit_code(self) -> int:
        """1 a delivery failed for good, 3 a limit held a message back, else 0."""
        if self.failed:
            return EXIT_FAILED
        return EXIT_HELD_BACK if self.held_back else EXIT_OK
