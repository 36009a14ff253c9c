"""What counts as public, checked entry by entry against IANA's special-purpose registries."""

from __future__ import annotations

import ipaddress

import pytest

from notifier.config import Settings
from notifier.errors import TargetRefused
from notifier.net import AddressPolicy
from notifier.public import IPV4_SPECIAL, IPV6_SPECIAL, is_public_address, why_not_public
from notifier.targets import parse_target

# IANA IPv4 Special-Purpose Address Registry (iana-ipv4-special-registry), "Globally Reachable"
# column, written out here independently of the table in notifier/public.py.
IANA_V4 = [
    ("0.0.0.0/8", False),
    ("0.0.0.0/32", False),
    ("10.0.0.0/8", False),
    ("100.64.0.0/10", False),
    ("127.0.0.0/8", False),
    ("169.254.0.0/16", False),
    ("172.16.0.0/12", False),
    ("192.0.0.0/24", False),
    ("192.0.0.0/29", False),
    ("192.0.0.8/32", False),
    ("192.0.0.9/32", True),
    ("192.0.0.10/32", True),
    ("192.0.0.170/32", False),
    ("192.0.0.171/32", False),
    ("192.0.2.0/24", False),
    ("192.31.196.0/24", True),
    ("192.52.193.0/24", True),
    ("192.88.99.0/24", False),  # deprecated 6to4 relay anycast (RFC 7526)
    ("192.168.0.0/16", False),
    ("192.175.48.0/24", True),
    ("198.18.0.0/15", False),
    ("198.51.100.0/24", False),
    ("203.0.113.0/24", False),
    ("240.0.0.0/4", False),
    ("255.255.255.255/32", False),
]

# IANA IPv6 Special-Purpose Address Registry (iana-ipv6-special-registry). Entries whose
# reachability is "N/A" embed an IPv4 address and are tested below with one.
IANA_V6 = [
    ("::1/128", False),
    ("::/128", False),
    ("64:ff9b:1::/48", False),
    ("100::/64", False),
    ("100:0:0:1::/64", False),
    ("2001::/23", False),
    ("2001:1::1/128", True),
    ("2001:1::2/128", True),
    ("2001:1::3/128", True),
    ("2001:2::/48", False),
    ("2001:3::/32", True),
    ("2001:4:112::/48", True),
    ("2001:10::/28", False),
    ("2001:20::/28", True),
    ("2001:30::/28", True),
    ("2001:db8::/32", False),
    ("2620:4f:8000::/48", True),
    ("3fff::/20", False),
    ("5f00::/16", False),
    ("fc00::/7", False),
    ("fe80::/10", False),
]


def _inside(prefix: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The first, a middle and the last address of a block."""
    net = ipaddress.ip_network(prefix)
    return [net[0], net[net.num_addresses // 2], net[-1]]


class TestRegistries:
    @pytest.mark.parametrize(("prefix", "reachable"), IANA_V4 + IANA_V6)
    def test_each_registry_entry(self, prefix: str, reachable: bool) -> None:
        """Every address of a special-purpose block gets the registry's verdict (where the most
        specific entry holding it agrees), with a reason naming the block when refused."""
        table = IPV4_SPECIAL if ":" not in prefix else IPV6_SPECIAL
        for addr in _inside(prefix):
            decider = next(b for b in table if addr in b.network)
            if str(decider.network) != str(ipaddress.ip_network(prefix)):
                continue  # a more specific entry decides this address; it has its own case
            assert is_public_address(addr) is reachable, addr
            if not reachable:
                assert why_not_public(addr) == decider.name

    def test_every_entry_is_in_the_table(self) -> None:
        """The tool's table holds every registry entry with the same verdict."""
        table = {str(b.network): b.reachable for b in IPV4_SPECIAL + IPV6_SPECIAL}
        for prefix, reachable in IANA_V4 + IANA_V6:
            assert table[str(ipaddress.ip_network(prefix))] is reachable, prefix

    @pytest.mark.parametrize(
        ("address", "public"),
        [
            ("74.125.225.229", True),
            ("2001:4860:4860::8888", True),
            ("224.0.0.1", False),  # multicast
            ("ff02::1", False),
            ("fec0::1", False),  # deprecated site-local
            ("::10.0.0.1", False),  # IPv4-compatible, deprecated
            ("::74.125.225.229", False),
            ("4000::1", False),  # outside global unicast, unassigned
        ],
    )
    def test_outside_the_special_registries(self, address: str, public: bool) -> None:
        """Multicast, site-local, IPv4-compatible and unassigned space are not public."""
        assert is_public_address(ipaddress.ip_address(address)) is public


class TestEmbeddedIPv4:
    @pytest.mark.parametrize(
        ("address", "public", "says"),
        [
            ("2002:a9fe:a9fe::1", False, "6to4 (RFC 3056) of 169.254.169.254, link-local"),
            ("2002:0a00:0001::1", False, "of 10.0.0.1, private-use"),
            ("2002:4a7d:e1e5::1", True, None),  # 74.125.225.229 inside 6to4
            ("64:ff9b::a9fe:a9fe", False, "IPv4-IPv6 translation (RFC 6052) of 169.254.169.254"),
            ("64:ff9b::4a7d:e1e5", True, None),
            ("64:ff9b:1::4a7d:e1e5", False, "local-use IPv4/IPv6 translation"),
            ("::ffff:127.0.0.1", False, "loopback"),
            ("::ffff:74.125.225.229", True, None),
            # Teredo: server 10.0.0.1, client 74.125.225.229 (obfuscated) and the reverse
            ("2001:0:a00:1::b582:1e1a", False, "Teredo (RFC 4380) of 10.0.0.1"),
            ("2001:0:4a7d:e1e5::f5ff:fffe", False, "of 10.0.0.1"),
        ],
    )
    def test_judged_by_the_address_it_leads_to(
        self, address: str, public: bool, says: str | None
    ) -> None:
        """An IPv6 form carrying an IPv4 address is as private as that address."""
        addr = ipaddress.ip_address(address)
        assert is_public_address(addr) is public
        reason = why_not_public(addr)
        if says is None:
            assert reason is None
        else:
            assert reason is not None and says in reason

    def test_connection_guard_uses_the_same_rule(self) -> None:
        """The connection guard refuses what the target check refuses."""
        policy = AddressPolicy(allow_private=False)
        assert not policy.allows(ipaddress.ip_address("2002:a9fe:a9fe::1"))
        assert not policy.allows(ipaddress.ip_address("192.0.0.8"))
        assert policy.allows(ipaddress.ip_address("2002:4a7d:e1e5::1"))


class TestTargets:
    @pytest.mark.parametrize(
        ("target", "says"),
        [
            ("2002:a9fe:a9fe::1", "169.254.169.254"),
            ("192.0.0.8", "IPv4 dummy address"),
            ("fec0::1", "site-local"),
            ("64:ff9b:1::1", "local-use"),
            ("100.64.0.1", "shared address space"),
        ],
    )
    def test_refused_with_the_reason(self, target: str, says: str) -> None:
        """The target check names the block that makes an address non-public."""
        with pytest.raises(TargetRefused) as raised:
            parse_target(target, Settings())
        assert says in str(raised.value)

    def test_documentation_refused_even_when_nonpublic_allowed(self) -> None:
        """Documentation ranges are never real hosts, whatever the configuration says."""
        settings = Settings.from_mapping({"targets": {"allow_nonpublic": True}})
        for target in ("192.0.2.1", "2001:db8::1", "3fff::1"):
            with pytest.raises(TargetRefused):
                parse_target(target, settings)
        assert str(parse_target("2002:a9fe:a9fe::1", settings)) == "2002:a9fe:a9fe::1"
