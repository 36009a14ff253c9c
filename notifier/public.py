"""What counts as a public address: one rule for the target check and the connection guard.

The tables are IANA's special-purpose address registries (iana-ipv4-special-registry and
iana-ipv6-special-registry), with each entry's "Globally Reachable" column. The most specific
entry that holds an address decides. IPv6 forms that carry an IPv4 address (IPv4-mapped, NAT64,
6to4, Teredo) are judged by the IPv4 address they lead to, so that 2002:a9fe:a9fe::1
(169.254.169.254 inside 6to4) is as private as the address it reaches.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .models import IPAddress

__all__ = ["SpecialBlock", "IPV4_SPECIAL", "IPV6_SPECIAL", "why_not_public", "is_public_address"]


@dataclass(frozen=True, slots=True)
class SpecialBlock:
    """One registry entry. ``reachable`` None: decided by the IPv4 address the block embeds."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    name: str
    reachable: bool | None


def _blocks(rows: tuple[tuple[str, str, bool | None], ...]) -> tuple[SpecialBlock, ...]:
    blocks = [SpecialBlock(ipaddress.ip_network(p), name, r) for p, name, r in rows]
    # the most specific entry first: it is the one that decides
    return tuple(sorted(blocks, key=lambda b: -b.network.prefixlen))


IPV4_SPECIAL = _blocks(
    (
        ("0.0.0.0/8", '"this network" (RFC 791)', False),
        ("0.0.0.0/32", 'unspecified, "this host on this network" (RFC 1122)', False),
        ("10.0.0.0/8", "private-use (RFC 1918)", False),
        ("100.64.0.0/10", "shared address space (RFC 6598)", False),
        ("127.0.0.0/8", "loopback (RFC 1122)", False),
        ("169.254.0.0/16", "link-local (RFC 3927)", False),
        ("172.16.0.0/12", "private-use (RFC 1918)", False),
        ("192.0.0.0/24", "IETF protocol assignments (RFC 6890)", False),
        ("192.0.0.0/29", "IPv4 service continuity prefix (RFC 7335)", False),
        ("192.0.0.8/32", "IPv4 dummy address (RFC 7600)", False),
        ("192.0.0.9/32", "Port Control Protocol anycast (RFC 7723)", True),
        ("192.0.0.10/32", "TURN anycast (RFC 8155)", True),
        ("192.0.0.170/32", "NAT64/DNS64 discovery (RFC 8880)", False),
        ("192.0.0.171/32", "NAT64/DNS64 discovery (RFC 8880)", False),
        ("192.0.2.0/24", "documentation, TEST-NET-1 (RFC 5737)", False),
        ("192.31.196.0/24", "AS112-v4 (RFC 7535)", True),
        ("192.52.193.0/24", "AMT (RFC 7450)", True),
        ("192.88.99.0/24", "deprecated 6to4 relay anycast (RFC 7526)", False),
        ("192.168.0.0/16", "private-use (RFC 1918)", False),
        ("192.175.48.0/24", "direct delegation AS112 service (RFC 7534)", True),
        ("198.18.0.0/15", "benchmarking (RFC 2544)", False),
        ("198.51.100.0/24", "documentation, TEST-NET-2 (RFC 5737)", False),
        ("203.0.113.0/24", "documentation, TEST-NET-3 (RFC 5737)", False),
        ("224.0.0.0/4", "multicast (RFC 5771)", False),
        ("240.0.0.0/4", "reserved (RFC 1112)", False),
        ("255.255.255.255/32", "limited broadcast (RFC 8190)", False),
    )
)

IPV6_SPECIAL = _blocks(
    (
        ("::1/128", "loopback (RFC 4291)", False),
        ("::/128", "unspecified (RFC 4291)", False),
        ("::/96", "IPv4-compatible, deprecated (RFC 4291)", False),
        ("::ffff:0:0/96", "IPv4-mapped (RFC 4291)", None),
        ("64:ff9b::/96", "IPv4-IPv6 translation (RFC 6052)", None),
        ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation (RFC 8215)", False),
        ("100::/64", "discard-only (RFC 6666)", False),
        ("100:0:0:1::/64", "dummy IPv6 prefix (RFC 9780)", False),
        ("2001::/23", "IETF protocol assignments (RFC 2928)", False),
        ("2001::/32", "Teredo (RFC 4380)", None),
        ("2001:1::1/128", "Port Control Protocol anycast (RFC 7723)", True),
        ("2001:1::2/128", "TURN anycast (RFC 8155)", True),
        ("2001:1::3/128", "DNS-SD service registration anycast (RFC 9665)", True),
        ("2001:2::/48", "benchmarking (RFC 5180)", False),
        ("2001:3::/32", "AMT (RFC 7450)", True),
        ("2001:4:112::/48", "AS112-v6 (RFC 7535)", True),
        ("2001:10::/28", "deprecated ORCHID (RFC 4843)", False),
        ("2001:20::/28", "ORCHIDv2 (RFC 7343)", True),
        ("2001:30::/28", "drone remote ID entity tags (RFC 9374)", True),
        ("2001:db8::/32", "documentation (RFC 3849)", False),
        ("2002::/16", "6to4 (RFC 3056)", None),
        ("2620:4f:8000::/48", "direct delegation AS112 service (RFC 7534)", True),
        ("3fff::/20", "documentation (RFC 9637)", False),
        ("5f00::/16", "segment routing SIDs (RFC 9602)", False),
        ("fc00::/7", "unique-local (RFC 4193)", False),
        ("fe80::/10", "link-local (RFC 4291)", False),
        ("fec0::/10", "site-local, deprecated (RFC 3879)", False),
        ("ff00::/8", "multicast (RFC 4291)", False),
    )
)


def _bounds(
    table: tuple[SpecialBlock, ...],
) -> tuple[tuple[int, int, SpecialBlock], ...]:
    return tuple(
        (int(b.network.network_address), int(b.network.broadcast_address), b) for b in table
    )


# as integers: a batch asks for every address it reads, and ``addr in network`` costs ten times
# more than two comparisons
_BOUNDS = {4: _bounds(IPV4_SPECIAL), 6: _bounds(IPV6_SPECIAL)}


def _block(addr: IPAddress) -> SpecialBlock | None:
    n = int(addr)
    return next((b for start, end, b in _BOUNDS[addr.version] if start <= n <= end), None)


def _embedded(addr: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address leads to (mapped, NAT64, 6to4, Teredo server/client)."""
    if addr.ipv4_mapped is not None:
        return [addr.ipv4_mapped]
    if addr.sixtofour is not None:
        return [addr.sixtofour]
    if addr.teredo is not None:
        return list(addr.teredo)
    if addr in ipaddress.IPv6Network("64:ff9b::/96"):
        return [ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)]
    return []


def why_not_public(addr: IPAddress) -> str | None:
    """None for a globally reachable unicast address; else one phrase saying what it is."""
    block = _block(addr)
    if block is not None and block.reachable is False:
        return block.name
    if isinstance(addr, ipaddress.IPv6Address):
        for inner in _embedded(addr):
            reason = why_not_public(inner)
            if reason is not None:
                kind = block.name if block is not None else "IPv6 form"
                return f"{kind} of {inner}, {reason}"
    if block is not None:
        return None  # the registry says globally reachable, or the embedded address is
    if addr.is_multicast:
        return "multicast"
    if addr.is_reserved or not addr.is_global:
        return "reserved, not globally routable"
    return None


def is_public_address(addr: IPAddress) -> bool:
    """Globally routable unicast by IANA's special-purpose registries (and what they embed)."""
    return why_not_public(addr) is None
