"""Which addresses notifier may notify about."""

from __future__ import annotations

import ipaddress

from .config import Settings
from .errors import TargetRefused
from .models import IPAddress
from .public import why_not_public

__all__ = ["parse_target"]

# never a real host: refused even where non-public targets are allowed
_DOCUMENTATION = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20")
)


def parse_target(text: str, settings: Settings) -> IPAddress:
    """The address in ``text``, or ``TargetRefused`` with one line saying why not."""
    value = text.strip()
    try:
        addr = ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        shown = value if len(value) <= 60 else value[:57] + "..."
        raise TargetRefused(f"not an IP address: {shown!r}", target=value) from None
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if any(addr in net for net in _DOCUMENTATION):
        raise TargetRefused(
            f"refusing {addr}: documentation address, not a real host", target=str(addr)
        )
    for cidr in settings.targets.exclude:
        if addr in ipaddress.ip_network(cidr, strict=False):
            raise TargetRefused(
                f"refusing {addr}: excluded by [targets] exclude ({cidr})", target=str(addr)
            )
    reason = why_not_public(addr)
    if reason is not None and not settings.targets.allow_nonpublic:
        raise TargetRefused(
            f"refusing {addr}: {reason}, not globally routable "
            "(set [targets] allow_nonpublic = true for internal notification)",
            target=str(addr),
        )
    return addr
