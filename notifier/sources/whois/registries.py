"""The registries, their servers and the records a WHOIS answer becomes."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...models import Contact, Network

__all__: list[str] = []  # internal: the package (sources.whois) is the surface


SOURCE = "whois"
IANA_SERVER = "whois.iana.org"

# an explicit abuse field: abuse-mailbox, the RIPE abuse header, OrgAbuseEmail, an abuse-c handle
ABUSE_CONFIDENCE = 0.85
# an address the record itself says to use for abuse (remarks, an abuse@ role e-mail, the
# contact an NIR lists for the network)
STATED_CONFIDENCE = 0.7
# technical / NOC / administrative contacts: used only when nothing better is published
FALLBACK_CONFIDENCE = 0.5
_FALLBACK_BELOW = 0.6

_MAX_CONTACTS = 20
_MAX_NOTES = 60
_MAX_VALUE = 1000
_MAX_HANDLE_QUERIES = 2
# how long nobody queries a server that told us we are over its limit
_RATE_LIMIT_BACKOFF = 60.0


# --------------------------------------------------------------------------- registries


@dataclass(frozen=True, slots=True)
class _Registry:
    label: str  # Network.registry, and how provenance names it (same spelling as RDAP)
    server: str
    charset: str


_REGISTRIES: dict[str, _Registry] = {
    r.server: r
    for r in (
        _Registry("ARIN", "whois.arin.net", "utf-8"),
        _Registry("RIPE NCC", "whois.ripe.net", "utf-8"),
        _Registry("APNIC", "whois.apnic.net", "iso-8859-1"),
        _Registry("LACNIC", "whois.lacnic.net", "utf-8"),
        _Registry("AFRINIC", "whois.afrinic.net", "utf-8"),
        _Registry("JPNIC", "whois.nic.ad.jp", "iso-2022-jp"),
        _Registry("KRNIC", "whois.nic.or.kr", "utf-8"),
        _Registry("TWNIC", "whois.twnic.net.tw", "utf-8"),
        _Registry("CNNIC", "whois.cnnic.cn", "utf-8"),
        _Registry("IDNIC", "whois.idnic.net", "utf-8"),
        _Registry("registro.br", "whois.registro.br", "iso-8859-1"),
        _Registry("IANA", IANA_SERVER, "utf-8"),
    )
}

# older or alternative names the registries' own texts still print
_SERVER_ALIASES = {
    "whois.krnic.net": "whois.nic.or.kr",
    "whois.kisa.or.kr": "whois.nic.or.kr",
    "whois.nic.br": "whois.registro.br",
    "whois.cnnic.net.cn": "whois.cnnic.cn",
    "ipwhois.cnnic.cn": "whois.cnnic.cn",
    "whois.twnic.tw": "whois.twnic.net.tw",
    "whois.afrinic.org": "whois.afrinic.net",
}

# registry names as RDAP, RPSL ``source:`` lines and configuration spell them
_NAMES = {
    "arin": "whois.arin.net",
    "ripe": "whois.ripe.net",
    "ripencc": "whois.ripe.net",
    "apnic": "whois.apnic.net",
    "lacnic": "whois.lacnic.net",
    "afrinic": "whois.afrinic.net",
    "jpnic": "whois.nic.ad.jp",
    "krnic": "whois.nic.or.kr",
    "kisa": "whois.nic.or.kr",
    "twnic": "whois.twnic.net.tw",
    "cnnic": "whois.cnnic.cn",
    "idnic": "whois.idnic.net",
    "registrobr": "whois.registro.br",
    "nicbr": "whois.registro.br",
    "iana": IANA_SERVER,
}

_NIRS = frozenset({"jpnic", "krnic", "twnic", "cnnic", "idnic"})

# Mailboxes at these domains belong to the registries themselves (hostmasters, IRTs the NIR
# registers for a whole block): writing to them about a host reaches nobody who runs it.
_REGISTRY_DOMAINS = (
    "iana.org",
    "arin.net",
    "ripe.net",
    "apnic.net",
    "lacnic.net",
    "afrinic.net",
    "nic.ad.jp",
    "nic.or.kr",
    "krnic.net",
    "kisa.or.kr",
    "twnic.net.tw",
    "twnic.tw",
    "cnnic.cn",
    "cnnic.net.cn",
    "idnic.net",
    "apjii.or.id",
    "registro.br",
)


def _canonical(server: str) -> str:
    name = server.strip().lower().rstrip(".")
    return _SERVER_ALIASES.get(name, name)


def registry_server(name: str) -> str | None:
    """The WHOIS server of a registry named as RDAP or RPSL name it (``RIPE NCC``, ``apnic``...).

    A WHOIS host name is accepted as is. ``None`` when the name means nothing to us.
    """
    text = name.strip().lower()
    if text.startswith("whois.") or text in _SERVER_ALIASES:
        return _canonical(text)
    key = re.sub(r"[^a-z]", "", text.split("#", 1)[0])
    if key in _NAMES:
        return _NAMES[key]
    for prefix, server in (("ripe", "whois.ripe.net"), ("idnic", "whois.idnic.net")):
        if key.startswith(prefix):  # RIPE-NONAUTH, ID-NIC...
            return server
    return None


def _label(server: str) -> str:
    known = _REGISTRIES.get(_canonical(server))
    return known.label if known else _canonical(server)


def _is_registry_own(address: str) -> bool:
    domain = address.rpartition("@")[2]
    return any(domain == d or domain.endswith("." + d) for d in _REGISTRY_DOMAINS)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Referral:
    """Where a WHOIS answer says to ask next.

    ``query`` is what to ask there (the original query when the answer does not say).
    ``supersedes`` is true when the referring answer is only a pointer between registries
    (IANA, a transfer stub): its contacts are the registry's, not the network's.
    """

    server: str
    query: str = ""
    port: int | None = None
    protocol: str = "whois"  # "whois" or "rwhois"
    reason: str = ""
    supersedes: bool = False


@dataclass(frozen=True, slots=True)
class WhoisRecord:
    """What one WHOIS answer says about a network."""

    server: str
    format: str  # rpsl, arin, lacnic, jpnic, krnic, twnic, iana, unknown
    registry: str
    network: Network | None = None
    contacts: tuple[Contact, ...] = ()
    referral: Referral | None = None
    notes: tuple[str, ...] = ()
    # JPNIC keeps e-mail addresses in separate contact records: (handle, what it is for)
    contact_handles: tuple[tuple[str, str], ...] = ()
