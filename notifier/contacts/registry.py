"""The contacts registry: the national CERT of a country and the operator's overrides for a
network, AS number or domain, as contacts with their provenance."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType

from ..config import Settings, shipped_path
from ..models import Contact, IPAddress, Role
from .entry import CONFIDENCE, SOURCE, UNDATED, Entry, country_code, domain_name
from .schema import load_file

__all__ = ["ContactRegistry"]

_DEFAULT_CONFIDENCE = "high"  # an entry without one was written by the operator, who vouches for it
_OVERRIDE_CONFIDENCE = 1.0


def _parents(name: str) -> Iterator[str]:
    """``name`` and each parent domain that still has two labels, most specific first."""
    labels = name.split(".")
    for start in range(len(labels) - 1):
        yield ".".join(labels[start:])


class ContactRegistry:
    """National CERTs by country and operator overrides by network, ASN or domain."""

    def __init__(
        self, certs: Mapping[str, Entry] | None = None, overrides: Mapping[str, Entry] | None = None
    ) -> None:
        self._certs = dict(certs or {})
        self._overrides = dict(overrides or {})
        self._networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, Entry]] = []
        for key, entry in self._overrides.items():
            if "/" in key:
                self._networks.append((ipaddress.ip_network(key), entry))
        # longest prefix first, so the first containing network is the most specific one
        self._networks.sort(key=lambda item: item[0].prefixlen, reverse=True)

    @classmethod
    def load(
        cls,
        user_file: str | os.PathLike[str] | None = None,
        *,
        shipped: str | os.PathLike[str] | None = None,
    ) -> ContactRegistry:
        """The shipped registry, extended by ``user_file`` when given (its entries win)."""
        shipped_file = Path(shipped) if shipped is not None else shipped_path("contacts.yaml")
        certs, overrides = load_file(shipped_file, SOURCE)
        if user_file is not None and str(user_file) != "":
            user = Path(user_file)
            user_certs, user_overrides = load_file(user, user.name)
            certs.update(user_certs)
            overrides.update(user_overrides)
        return cls(certs, overrides)

    @classmethod
    def from_settings(cls, settings: Settings) -> ContactRegistry:
        return cls.load(settings.contacts.file or None)

    @property
    def certs(self) -> Mapping[str, Entry]:
        return MappingProxyType(self._certs)

    @property
    def overrides(self) -> Mapping[str, Entry]:
        return MappingProxyType(self._overrides)

    def national_cert_contacts(self, country: str) -> list[Contact]:
        """Every address of the national CERT of ``country`` (ISO code), primary first."""
        code = country_code(country.strip())
        entry = self._certs.get(code) if code else None
        if entry is None:
            return []
        level = entry.confidence or _DEFAULT_CONFIDENCE
        team = f" ({entry.name})" if entry.name else ""
        when = f", checked {entry.checked}" if entry.checked else ""
        if entry.published.lower() == UNDATED:
            when += ", source undated"
        elif entry.published:
            when += f", source dated {entry.published}"
        provenance = [f"national CERT for {entry.key}{team}, {entry.origin}{when}"]
        if entry.confidence:
            provenance.append(f"registry confidence: {entry.confidence}")
        if entry.part_of:
            provenance.append(f"{entry.key} is served by the national CERT of {entry.part_of}")
        if entry.languages:
            provenance.append(f"working languages: {', '.join(entry.languages)}")
        if entry.note:
            provenance.append(entry.note)
        return [
            Contact(
                address=address,
                role=Role.NATIONAL_CERT,
                sources=(SOURCE,),
                confidence=CONFIDENCE[level],
                provenance=tuple(provenance),
                name=entry.name,
                encryption=(entry.encryption,) if entry.encryption else (),
                languages=entry.languages,
            )
            for address in entry.addresses
        ]

    def national_cert(self, country: str) -> Contact | None:
        """The national CERT of ``country`` (ISO code), or None when the registry has none."""
        found = self.national_cert_contacts(country)
        return found[0] if found else None

    def overrides_for(
        self,
        ip: IPAddress | str | None = None,
        asn: int | None = None,
        domains: Iterable[str] = (),
    ) -> list[Contact]:
        """The operator's own contacts for this address, AS number or these domains."""
        return self.override_contacts(self.matching_overrides(ip, asn, domains))

    def matching_overrides(
        self,
        ip: IPAddress | str | None = None,
        asn: int | None = None,
        domains: Iterable[str] = (),
    ) -> list[Entry]:
        """The override entries for this address, AS number or these domains.

        Networks: the most specific containing network only. AS numbers: exact. Domains: the
        name itself or its closest listed parent (``example.org`` covers ``db.example.org``).
        """
        matched: list[Entry] = []
        target = _as_ip(ip)
        if target is not None:
            for network, entry in self._networks:
                if network.version == target.version and target in network:
                    matched.append(entry)
                    break
        if asn is not None:
            by_asn = self._overrides.get(f"AS{asn}")
            if by_asn is not None:
                matched.append(by_asn)
        for raw in domains:
            name = domain_name(raw) if isinstance(raw, str) else None
            if name is None:
                continue
            for candidate in _parents(name):
                by_domain = self._overrides.get(candidate)
                if by_domain is not None:
                    if by_domain not in matched:
                        matched.append(by_domain)
                    break
        return matched

    @staticmethod
    def override_contacts(matched: Iterable[Entry]) -> list[Contact]:
        """The contacts the override entries name, one per address, provenance joined."""
        contacts: dict[str, Contact] = {}
        for entry in matched:
            team = f" ({entry.name})" if entry.name else ""
            provenance = [f"operator override for {entry.key}{team}, {entry.origin}"]
            replaced = "network" if entry.network_scope else "owner"
            if entry.mode == "replace":
                provenance.append(f"replaces the automatic {replaced} contacts")
            else:
                provenance.append(f"added to the automatic {replaced} contacts (mode: add)")
            if entry.note:
                provenance.append(entry.note)
            for address in entry.addresses:
                contact = Contact(
                    address=address,
                    role=Role.OVERRIDE,
                    sources=(SOURCE,),
                    confidence=_OVERRIDE_CONFIDENCE,
                    provenance=tuple(provenance),
                    name=entry.name,
                    encryption=(entry.encryption,) if entry.encryption else (),
                    languages=entry.languages,
                )
                contacts[address] = (
                    contacts[address].merged(contact) if address in contacts else contact
                )
        return list(contacts.values())


def _as_ip(value: IPAddress | str | None) -> IPAddress | None:
    if value is None or isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    try:
        return ipaddress.ip_address(str(value).strip())
    except ValueError:
        return None
