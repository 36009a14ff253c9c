"""What a contacts file holds once validated: its entries and problems, and the canonical form of
the keys entries are found by (country, network, AS number, domain)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "CONFIDENCE",
    "OVERRIDE_MODES",
    "SOURCE",
    "UNDATED",
    "Entry",
    "Problem",
    "country_code",
    "domain_name",
    "override_key",
]

SOURCE = "contacts.yaml"  # the `sources` name every contact from this registry carries
CONFIDENCE = MappingProxyType({"high": 0.8, "medium": 0.6, "low": 0.4})
OVERRIDE_MODES = ("replace", "add")
UNDATED = "undated"  # `published`: the page that states the address carries no date
_COUNTRY = re.compile(r"^[A-Za-z]{2}\Z")
_ASN = re.compile(r"^AS(\d{1,10})\Z", re.IGNORECASE)
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)\Z")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a contacts file, at a 1-based line and column (0 when unknown)."""

    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.line}:{self.column}: {self.message}"


@dataclass(frozen=True, slots=True)
class Entry:
    """One validated entry: a national CERT (``key`` is the country) or an override."""

    key: str  # ISO country code, network (CIDR), ``AS<number>`` or domain, normalised
    addresses: tuple[str, ...]
    name: str = ""
    url: str = ""
    confidence: str = ""
    checked: str = ""  # when the entry was last checked against its sources
    published: str = ""  # the date its newest source carries, or "undated"
    sources: tuple[str, ...] = ()
    also: tuple[str, ...] = ()  # other addresses or teams, each with its reason
    languages: tuple[str, ...] = ()  # the team's working languages, BCP 47 tags
    part_of: str = ""  # a territory served by the national CERT of this country (ISO code)
    note: str = ""
    encryption: str = ""  # the team's OpenPGP key: https URL or openpgp4fpr: fingerprint
    origin: str = SOURCE  # the file the entry came from, as shown in provenance
    line: int = 0
    # overrides: "replace" the automatic contacts in the entry's scope, or "add" to them
    mode: str = "replace"

    @property
    def network_scope(self) -> bool:
        """Whether this override speaks for a network (CIDR or AS number), not a domain."""
        return "/" in self.key or bool(_ASN.match(self.key))


def country_code(raw: str) -> str | None:
    return raw.upper() if _COUNTRY.match(raw) else None


def override_key(raw: str) -> str | None:
    """A network, ``AS<number>`` or domain key in its canonical form, or None."""
    match = _ASN.match(raw)
    if match:
        number = int(match.group(1))
        return f"AS{number}" if number <= 0xFFFFFFFF else None
    if "/" in raw or ":" in raw or raw.replace(".", "").isdigit():
        try:
            return str(ipaddress.ip_network(raw, strict=True))
        except ValueError:
            return None
    return domain_name(raw)


def domain_name(raw: str) -> str | None:
    value = raw.strip().rstrip(".")
    if not value or len(value) > 253:
        return None
    try:
        value = value.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    labels = value.split(".")
    if len(labels) < 2 or labels[-1].isdigit() or not all(_LABEL.match(label) for label in labels):
        return None
    return value
