"""The values that flow through notifier: target → contacts → messages → deliveries.

This module imports nothing from the package, so every other module may depend on it.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from operator import attrgetter
from typing import Any, TypeVar

__all__ = [
    "IPAddress",
    "Role",
    "Target",
    "Finding",
    "HostHint",
    "HintCheck",
    "Channel",
    "ChannelKind",
    "Contact",
    "Network",
    "Evidence",
    "SourceReport",
    "Resolution",
    "Delivery",
    "DeliveryStatus",
    "case_reference",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_T = TypeVar("_T")


def _pickled_by_fields(cls: type[_T]) -> type[_T]:
    """Pickle (and copy) ``cls`` as its constructor and its fields' values.

    These values cross to the worker processes by the thousand (an address's resolution, a
    message's findings); a slotted dataclass's own ``__getstate__`` walks its fields in Python
    for every object, three times the cost of this. A field the constructor does not take is
    one worked out from the others (a cache): it is worked out again on the other side.
    """
    names = tuple(f.name for f in fields(cls) if f.init)  # type: ignore[arg-type]
    values = attrgetter(*names)

    def __reduce__(self: Any) -> tuple[type[_T], tuple[Any, ...]]:
        state = values(self)
        return cls, state if len(names) > 1 else (state,)

    cls.__reduce__ = __reduce__  # type: ignore[method-assign]
    return cls


class Role(StrEnum):
    """Who a contact is for the target, in the order the ladder climbs."""

    OVERRIDE = "override"  # the operator said so in contacts.yaml
    OWNER = "owner"  # the party running the host (security.txt, role mailbox)
    NETWORK = "network"  # the abuse desk of the network the address is in
    REGISTRAR = "registrar"  # the registrar of the host's domain
    NATIONAL_CERT = "national-cert"  # last rung: the country's CERT


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class Target:
    """An address to notify about, with host names a finding carries for it."""

    ip: IPAddress
    hostnames: tuple[str, ...] = ()
    # names a finding or the operator gave for the address: used once forward-confirmed
    hints: tuple[HostHint, ...] = ()


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class HostHint:
    """A host name a scanner record carries for the address, and where in the record it was.

    ``source`` names the field, e.g. ``"nmap hostname"``, ``"tls certificate"``, ``"http host"``,
    ``"csv hostname"``. A hint is only a claim: resolve uses it for lookups once it is
    forward-confirmed (the name resolves to the address).
    """

    name: str
    source: str


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class HintCheck:
    """What resolve made of one host name hint.

    ``name`` is the cleaned A-label form (punycode for IDNs), or the hint as given, shortened and
    made printable, when it was refused. ``confirmed`` hints take part in owner lookups; the others
    are shown, with ``reason``, and never mailed.
    """

    name: str
    source: str
    confirmed: bool
    reason: str = ""


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class Finding:
    """What was seen: the exposure, never the leaked contents."""

    ip: IPAddress
    text: str
    port: int | None = None
    hostname: str | None = None
    observed_at: datetime | None = None
    extra: tuple[tuple[str, str], ...] = ()
    hints: tuple[HostHint, ...] = ()
    service: str | None = None
    # ``key``, once asked: a batch asks each finding's several times on its way (the message's
    # unit, the history, the case reference, the claim), 0.6 us each from the shared cache
    _key: str = field(default="", init=False, repr=False, compare=False)

    @property
    def key(self) -> str:
        """Stable identity of this finding, for idempotence and case references."""
        key = self._key
        if not key:
            key = _finding_key(self.ip, self.port, self.text)
            object.__setattr__(self, "_key", key)
        return key


# a batch asks a finding's key several times on its way (history, claim, case reference)
@lru_cache(maxsize=1 << 16)
def _finding_key(ip: IPAddress, port: int | None, text: str) -> str:
    raw = f"{ip}|{port or ''}|{' '.join(text.split()).lower()}"
    return hashlib.sha256(raw.encode()).hexdigest()


def case_reference(findings: tuple[Finding, ...] | list[Finding]) -> str:
    """A short, stable reference a recipient can quote back (e.g. ``NTF-3KQ7ZD2M4A``)."""
    digest = hashlib.sha256("|".join(sorted(f.key for f in findings)).encode()).digest()
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    number = int.from_bytes(digest[:8], "big")
    chars = []
    for _ in range(10):
        number, rest = divmod(number, len(alphabet))
        chars.append(alphabet[rest])
    return "NTF-" + "".join(chars)


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class Contact:
    """A mailbox that can act on the target, and why we believe so.

    ``confidence`` is 0..1: 0.9 a registry's abuse role or a valid security.txt, 0.5 an inferred
    parent-domain file, 0.3 a guessed RFC 2142 role mailbox.
    """

    address: str
    role: Role
    sources: tuple[str, ...]
    confidence: float
    provenance: tuple[str, ...] = ()
    name: str = ""
    # OpenPGP keys the contact announced: https URLs or openpgp4fpr: fingerprints
    encryption: tuple[str, ...] = ()
    # languages the contact reads, most preferred first (security.txt Preferred-Languages,
    # contacts.yaml ``languages``): RFC 5646 tags
    languages: tuple[str, ...] = ()

    def merged(self, other: Contact) -> Contact:
        """The same mailbox found twice: keep the better-evidenced role and all provenance."""
        # the better-evidenced finding says what this mailbox is; a tie goes to the stronger role
        order = list(Role)
        stronger = min((self, other), key=lambda c: (-c.confidence, order.index(c.role)))
        return replace(
            self,
            role=stronger.role,
            sources=tuple(dict.fromkeys(self.sources + other.sources)),
            confidence=max(self.confidence, other.confidence),
            provenance=tuple(dict.fromkeys(self.provenance + other.provenance)),
            name=self.name or other.name,
            encryption=tuple(dict.fromkeys(self.encryption + other.encryption)),
            languages=self.languages or other.languages,
        )


class ChannelKind(StrEnum):
    """A way to reach a party that is not an e-mail address."""

    WEB = "web"  # an https:// report form or page
    PHONE = "phone"  # a tel: URI
    OTHER = "other"  # any other URI scheme the owner published


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class Channel:
    """A non-mail channel a party published (security.txt Contact, contacts.yaml ``url``).

    Not replaced by a guessed mailbox: reported as a manual step for the case.
    """

    kind: ChannelKind
    uri: str
    role: Role
    source: str
    provenance: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class Network:
    """The registry's record of the network an address is in."""

    registry: str
    handle: str = ""
    name: str = ""
    cidrs: tuple[str, ...] = ()
    start: str = ""
    end: str = ""
    country: str = ""
    org: str = ""
    asn: int | None = None
    # a postal address from the registry (registrant, else abuse desk): for letters
    postal_name: str = ""
    postal: tuple[str, ...] = ()


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class Evidence:
    """One raw answer a decision rests on: where it came from and the digest of its bytes."""

    source: str
    locator: str
    sha256: str
    fetched_at: datetime
    detail: str = ""


@_pickled_by_fields
@dataclass(slots=True)
class SourceReport:
    """What one lookup source found. A source with nothing to say returns an empty report."""

    source: str
    contacts: list[Contact] = field(default_factory=list)
    network: Network | None = None
    hostnames: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    error: str | None = None
    channels: list[Channel] = field(default_factory=list)
    # host names whose owner published a file that answered, usable or not (security.txt):
    # the owner has spoken, so nothing is guessed for them
    answered: list[str] = field(default_factory=list)
    # roles whose automatic contacts the operator's word replaces (contacts.yaml overrides)
    replaces: list[Role] = field(default_factory=list)


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class Resolution:
    """Everything the sources found for a target, merged and ranked.

    ``recipients`` are notified first; ``fallbacks`` (the national CERT) only when no recipient
    exists or every recipient fails permanently.
    """

    target: Target
    recipients: tuple[Contact, ...]
    fallbacks: tuple[Contact, ...]
    network: Network | None
    hostnames: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    errors: tuple[tuple[str, str], ...] = ()
    channels: tuple[Channel, ...] = ()
    hints: tuple[HintCheck, ...] = ()

    @property
    def contacts(self) -> tuple[Contact, ...]:
        return self.recipients + self.fallbacks


class DeliveryStatus(StrEnum):
    DELIVERED = "delivered"  # the server accepted end of DATA
    FAILED = "failed"  # permanent refusal, or retries exhausted
    ALREADY_SENT = "already-sent"  # idempotence: delivered in an earlier run
    IN_DOUBT = "in-doubt"  # an earlier run crashed between intent and outcome
    IN_FLIGHT = "in-flight"  # another live process is delivering it right now
    SUPPRESSED = "suppressed"  # on the suppression list: never written to
    HELD_BACK = "held-back"  # a sending limit (daily or run cap) held it: a later run sends it
    DRY_RUN = "dry-run"


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of handing one message for one recipient to the mail server."""

    recipient: str
    message_id: str
    status: DeliveryStatus
    attempts: int = 0
    smtp_code: int | None = None
    smtp_reply: str = ""
    digest: str = ""
    role: Role | None = None
    reason: str = ""  # why it was not sent (held back, suppressed, in doubt), for people
