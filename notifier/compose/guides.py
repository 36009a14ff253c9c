"""Which exposure guide explains which finding: by service name, then text, then port."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..models import Finding
from .context import service_of
from .library import Library

__all__ = ["guide_context", "guide_name"]

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
_VAGUE = frozenset({"unknown", "http", "https", "tcp", "udp", ""})


def guide_name(library: Library, finding: Finding) -> str:
    """The guide for ``finding``: its service (scanner, ``--service``, port), else ``generic``."""
    service = service_of(finding)
    named = library.aliases.get(service)
    if named and service not in _VAGUE:
        return named
    text = finding.text.lower()
    for phrase, guide in library.words.items():
        if phrase in text:
            return guide
    if finding.port and finding.port in library.ports:
        return library.ports[finding.port]
    return library.aliases.get(service, "generic")


def guide_context(
    library: Library, findings: Sequence[Finding], language: str
) -> list[dict[str, Any]]:
    """One rendered guide per distinct service among ``findings``, in the order first seen."""
    groups: dict[str, list[Finding]] = {}
    for finding in findings:
        groups.setdefault(guide_name(library, finding), []).append(finding)
    out = []
    for service, members in groups.items():
        first = members[0]
        targets = list(dict.fromkeys(f"{f.ip}:{f.port}" if f.port else str(f.ip) for f in members))
        values = {
            "ip": str(first.ip),
            "port": str(first.port or ""),
            # a host name goes into commands the owner may paste: only a plain DNS name
            "host": first.hostname
            if first.hostname and _HOSTNAME.match(first.hostname)
            else str(first.ip),
            "targets": ", ".join(targets[:20]) + (", ..." if len(targets) > 20 else ""),
        }
        rendered = library.guide(service, language).render(values)
        rendered["targets"] = targets
        out.append(rendered)
    return out
