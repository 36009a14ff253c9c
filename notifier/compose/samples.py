"""Sample findings and contacts: what ``notify templates render`` and the golden tests show."""

from __future__ import annotations

from datetime import UTC, datetime
from ipaddress import ip_address

from ..models import Contact, Finding, Network, Role
from .library import Library

__all__ = ["SAMPLE_NOW", "sample_contact", "sample_findings", "sample_network"]

SAMPLE_NOW = datetime(2025, 1, 13, 10, 0, tzinfo=UTC)
_SEEN = datetime(2025, 1, 11, 15, 35, tzinfo=UTC)
_ROLES = {"owner": Role.OWNER, "network": Role.NETWORK, "cert": Role.NATIONAL_CERT}


def sample_findings(library: Library, guide: str) -> list[Finding]:
    """One finding that ``guide`` explains (a documentation address: never contacted)."""
    ports = [p for p, name in library.ports.items() if name == guide]
    return [
        Finding(
            ip_address("192.0.2.10"),
            f"{library.guide(guide, 'en').title} (sample finding)",
            port=min(ports) if ports else 8080,
            hostname="db.example.org",
            observed_at=_SEEN,
            service=guide,
        )
    ]


def sample_contact(role: str, languages: tuple[str, ...] = ()) -> Contact:
    return Contact(
        "security@example.org",
        _ROLES.get(role, Role.OWNER),
        ("security.txt",),
        0.9,
        ("security.txt at https://example.org/.well-known/security.txt, Contact #1 of 1",),
        name="Example Security Team",
        languages=languages,
    )


def sample_network() -> Network:
    return Network(
        "ripe", "EXAMPLE-NET", "EXAMPLE-NET", ("192.0.2.0/24",), country="NL", org="Example BV"
    )
