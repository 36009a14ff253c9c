"""A small internet, described as data, that the sandbox turns into running servers.

Every address in it is on loopback (127.0.0.0/8), so the demo, the tests and pipeline authors'
integration tests exercise the real protocols without sending a packet anywhere else.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

__all__ = ["Registry", "WorldNetwork", "WorldHost", "World", "REGISTRIES", "demo_world"]


@dataclass(frozen=True, slots=True)
class Registry:
    """A regional registry: its RDAP host and its real WHOIS server name."""

    key: str
    rdap_host: str
    whois_server: str
    name: str


REGISTRIES = {
    r.key: r
    for r in (
        Registry("arin", "rdap.arin.sandbox", "whois.arin.net", "ARIN"),
        Registry("ripe", "rdap.ripe.sandbox", "whois.ripe.net", "RIPE NCC"),
        Registry("apnic", "rdap.apnic.sandbox", "whois.apnic.net", "APNIC"),
        Registry("lacnic", "rdap.lacnic.sandbox", "whois.lacnic.net", "LACNIC"),
        Registry("afrinic", "rdap.afrinic.sandbox", "whois.afrinic.net", "AFRINIC"),
    )
}


@dataclass(frozen=True, slots=True)
class WorldNetwork:
    """An address block as its registry describes it.

    ``rdap_roles=False`` serves an RDAP answer without roles (as AFRINIC does), so the abuse
    address is found only through WHOIS.
    """

    cidr: str
    registry: str
    handle: str
    name: str
    country: str
    org: str
    abuse: str | None
    rdap_roles: bool = True

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.cidr)


@dataclass(frozen=True, slots=True)
class WorldHost:
    """A host: its address, the name its PTR points to, and what its web server says."""

    ip: str
    name: str | None = None
    ptr: bool = True
    security_txt: str | None = None  # served at /.well-known/security.txt; "{expires}" filled in


@dataclass(frozen=True, slots=True)
class World:
    networks: tuple[WorldNetwork, ...]
    hosts: tuple[WorldHost, ...]
    # domains that accept mail (an MX record in the sandbox DNS)
    mail_domains: tuple[str, ...] = ()
    # scripted SMTP replies per recipient, consumed in order (default: accept)
    mail_script: dict[str, list[str]] = field(default_factory=dict)

    def network_of(self, ip: str) -> WorldNetwork | None:
        addr = ipaddress.ip_address(ip)
        matches = [n for n in self.networks if addr in n.network]
        return max(matches, key=lambda n: n.network.prefixlen, default=None)


SECURITY_TXT = """\
# Security contact for the State Health Department's public services
Contact: mailto:{contact}
Contact: https://{domain}/report-a-vulnerability
Expires: {{expires}}
Preferred-Languages: en, hi
Policy: https://{domain}/security-policy
"""


def demo_world() -> World:
    """The seed case, offline: an exposed records database of a state health department."""
    return World(
        networks=(
            WorldNetwork(
                "127.1.0.0/16",
                "apnic",
                "STATEHEALTH-IN",
                "STATEHEALTH-NET",
                "IN",
                "State Health Department (hosted by Example Telecom India)",
                "abuse@telecom-in.test",
            ),
            WorldNetwork(
                "127.2.0.0/16",
                "ripe",
                "CLOUD-EU-1",
                "CLOUD-EU",
                "DE",
                "Example Cloud GmbH",
                "abuse@cloud-eu.test",
            ),
            WorldNetwork(
                "127.3.0.0/16",
                "afrinic",
                "ACADEMIC-KE",
                "ACADEMIC-NET",
                "KE",
                "Example Academic Network",
                "abuse@academic-ke.test",
                rdap_roles=False,
            ),
            WorldNetwork(
                "127.4.0.0/16",
                "arin",
                "NET-127-4-0-0-1",
                "NOREPLY-ISP",
                "US",
                "Silent ISP",
                "abuse@silent-isp.test",
            ),
        ),
        hosts=(
            WorldHost(
                "127.1.0.10",
                "records.health-dept.test",
                security_txt=SECURITY_TXT.format(
                    contact="security@health-dept.test", domain="health-dept.test"
                ),
            ),
            WorldHost("127.2.0.20", "ec2-127-2-0-20.compute.cloud-eu.test"),
            WorldHost("127.3.0.30", "lab.academic-ke.test"),
            WorldHost("127.4.0.40", None),
        ),
        mail_domains=("health-dept.test", "telecom-in.test", "cloud-eu.test", "academic-ke.test"),
        mail_script={
            # greylisting: the first try is deferred, the retry accepted
            "security@health-dept.test": ["451 4.7.1 Greylisted, please try again later"],
            # the network's abuse desk is gone: the ladder falls back to the national CERT
            "abuse@silent-isp.test": ["550 5.1.1 Mailbox does not exist"],
        },
    )
