"""Which addresses notifier may notify about."""

from __future__ import annotations

import ipaddress

from .config import Settings
from .errors import TargetRefused
from .models import IPAddress
from .net import is_public_address

__all__ = ["parse_target"]

# never a real host: refused even where non-public targets are allowed
_DOCUMENTATION = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20")
)


def _kind(addr: IPAddress) -> str:
    checks = (
        ("loopback", addr.is_loopback),
        ("link-local", addr.is_link_local),
        ("multicast", addr.is_multicast),
        ("unspecified", addr.is_unspecified),
        ("reserved", addr.is_reserved),
        ("private", addr.is_private),
    )
    return next((name for name, hit in checks if hit), "not globally routable")


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
    if not is_public_address(addr) and not settings.targets.allow_nonpublic:
        raise TargetRefused(
            f"refusing {addr}: {_kind(addr)} address, not globally routable "
            "(set [targets] allow_nonpublic = true for internal notification)",
            target=str(addr),
        )
    return addr
