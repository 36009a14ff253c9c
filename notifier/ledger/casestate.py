"""A case as the read model holds it: its messages, what became of them, and its ladder.

``CaseState`` and ``MessageState`` are filled by ``ReadModel`` in log order. Review reads them
(``state``, ``timeline``); follow-ups and bounce fallbacks decide from them (which levels were
told, which contacts failed or bounced, the thread to reply in, the findings to send again) and
note their own sends with ``ReadModel.note_delivery`` so later decisions of the same run see
them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from ..models import Contact, Finding, Network, Role, Target
from ..models import Resolution as Resolved
from .chain import Record
from .rebuild import LEVELS, contact_of, findings_of, level_of, network_of
from .records import Bounce, Entry, Fallback, Intent, Resolution

__all__ = ["CaseLadder", "CaseState", "MessageState"]


@dataclass(slots=True)
class MessageState:
    """One message handed (or about to be handed) to a mail server, as the log tells it."""

    message_id: str
    recipient: str  # lower-cased, for matching
    role: str
    case: str
    ip: str
    attempt_id: str
    digest: str = ""
    sent_at: datetime | None = None  # the intent's time
    status: str = "in-doubt"  # in-doubt | delivered | failed
    delivered_at: datetime | None = None
    smtp_reply: str | None = None
    test: bool = False  # a rehearsal (--test-recipient): evidence, not a notice
    bounced: bool = False
    finding_keys: tuple[str, ...] = ()
    address: str = ""  # the recipient as written (the local part keeps its case)

    @property
    def reached(self) -> bool:
        """Delivered and not bounced: what a review calls reaching the recipient."""
        return self.status == "delivered" and not self.bounced

    @property
    def standing(self) -> bool:
        """Still counts as having reached its recipient when deciding to fall back.

        A message in doubt (intent without outcome) counts: sending refuses to resend it, so
        falling back past it would be acting on a guess.
        """
        return not self.bounced and self.status != "failed"

    @property
    def level(self) -> str | None:
        return level_of(self.role)


@dataclass(slots=True)
class CaseState:
    """A case: the findings about one or more addresses, and every message sent about them."""

    ref: str
    ips: list[str] = field(default_factory=list)
    findings: dict[str, Record] = field(default_factory=dict)  # key -> the intent's finding
    messages: list[MessageState] = field(default_factory=list)
    followups: list[tuple[datetime | None, str]] = field(default_factory=list)  # (when, level)
    acked: bool = False
    acked_at: datetime | None = None
    ack_note: str = ""
    bounces: list[Bounce] = field(default_factory=list)
    fallbacks: list[Fallback] = field(default_factory=list)
    opened: datetime | None = None
    timeline: list[Entry] = field(default_factory=list)  # every record about the case, in order
    _rebuilt: dict[str, Finding] | None = field(default=None, repr=False, compare=False)

    @property
    def rebuilt(self) -> dict[str, Finding]:
        """The case's findings as domain objects (by ``Finding.key``, first seen first): what a
        follow-up or a fallback sends again. Built on first use: a review never needs them."""
        if self._rebuilt is None:
            found: dict[str, Finding] = {}
            for entry in self.timeline:
                if isinstance(entry, Intent):
                    for finding in findings_of(entry):
                        found.setdefault(finding.key, finding)
            self._rebuilt = found
        return self._rebuilt

    def add_intent(self, intent: Intent, message: MessageState) -> None:
        self.messages.append(message)
        self.timeline.append(intent)
        self._rebuilt = None

    def delivered(self) -> list[MessageState]:
        return [m for m in self.messages if m.status == "delivered"]

    def in_doubt(self) -> list[MessageState]:
        return [m for m in self.messages if m.status == "in-doubt"]

    def last_notice(self) -> datetime | None:
        """When the case last went out: the latest delivery or recorded follow-up."""
        moments = [m.delivered_at for m in self.delivered() if m.delivered_at is not None]
        moments += [moment for moment, _ in self.followups if moment is not None]
        return max(moments, default=None)

    def levels_reached(self) -> set[str]:
        """Levels told about the case: a delivered message, or a follow-up already recorded."""
        levels = {m.level for m in self.delivered() if m.level}
        return levels | {level for _, level in self.followups if level in LEVELS}

    def thread(self) -> list[str]:
        """Message-IDs of the case's delivered messages, first sent first."""
        return list(dict.fromkeys(m.message_id for m in self.delivered()))

    def attempted(self) -> set[str]:
        """Every address the case was ever sent to (delivered, failed or in doubt)."""
        return {m.recipient for m in self.messages}

    def dead(self) -> set[str]:
        """Addresses that refused or bounced this case already: no way to reach anyone."""
        return {m.recipient for m in self.messages if m.status == "failed" or m.bounced}

    @property
    def state(self) -> str:
        """One word for reviews: acknowledged, bounced, delivered, in-doubt, failed."""
        if self.acked:
            return "acknowledged"
        if any(m.reached for m in self.messages):
            return "escalated" if self.followups else "delivered"
        if any(m.bounced for m in self.messages):
            return "bounced"
        if self.in_doubt():
            return "in-doubt"
        return "failed"


class CaseLadder:
    """Who a case's resolutions offered, level by level: what follow-ups and fallbacks climb.

    Mixed into ``ReadModel``, which fills ``resolutions`` and answers ``is_suppressed``.
    """

    resolutions: dict[str, Resolution]

    def is_suppressed(self, address: str) -> bool:
        raise NotImplementedError

    def _named(self, case: CaseState, groups: tuple[str, ...]) -> Iterable[tuple[str, object]]:
        """``(ip, contact item)`` for every contact the case's resolutions named in ``groups``."""
        for ip in case.ips:
            resolution = self.resolutions.get(ip)
            if resolution is None:
                continue
            for group in groups:
                for item in getattr(resolution, group):
                    yield ip, item

    def _offered(self, case: CaseState, groups: tuple[str, ...]) -> list[Contact]:
        seen: dict[str, Contact] = {}
        for _ip, item in self._named(case, groups):
            contact = contact_of(item)
            # a suppressed address is off the ladder: the level goes on without it
            if contact is not None and not self.is_suppressed(contact.address):
                seen.setdefault(contact.address.lower(), contact)
        return list(seen.values())

    def contacts(self, case: CaseState) -> list[Contact]:
        """Every contact the resolutions of the case's addresses offered, recipients first."""
        return self._offered(case, ("recipients", "fallbacks"))

    def fallbacks(self, case: CaseState) -> list[Contact]:
        """The resolutions' fallback ladder (registrar, national CERT) for the case, in order."""
        return self._offered(case, ("fallbacks",))

    def contacts_at(self, case: CaseState, level: str) -> list[Contact]:
        """The contacts of one ladder level; the registrar only where no abuse desk is known."""
        at_level = [c for c in self.contacts(case) if level_of(c.role) == level]
        if level == "network":
            desks = [c for c in at_level if c.role == Role.NETWORK]
            return desks or at_level
        return at_level

    def findings_for(self, case: CaseState, contact: Contact) -> list[Finding]:
        """The case's findings about addresses whose resolution named ``contact``.

        A case can span networks in several countries (a batch message to one abuse desk): each
        national CERT, or each desk, is told only about the addresses it is responsible for.
        When no resolution named it (a damaged or early log), it gets the whole case.
        """
        address = contact.address.lower()
        mine = {
            ip
            for ip, item in self._named(case, ("recipients", "fallbacks"))
            if isinstance(item, dict) and str(item.get("address", "")).lower() == address
        }
        findings = list(case.rebuilt.values())
        return [f for f in findings if str(f.ip) in mine] or findings

    def network(self, case: CaseState) -> Network | None:
        for ip in case.ips:
            resolution = self.resolutions.get(ip)
            network = network_of(resolution.network) if resolution is not None else None
            if network is not None:
                return network
        return None

    def resolution(self, case: CaseState) -> Resolved:
        """A resolution rebuilt from the log, to carry this run's deliveries in a SendResult."""
        # the unspecified address stands in only for a damaged log whose intents lack an address
        ip = ipaddress.ip_address(case.ips[0]) if case.ips else ipaddress.IPv4Address(0)
        contacts = self.contacts(case)
        fallback_roles = (Role.REGISTRAR, Role.NATIONAL_CERT)
        return Resolved(
            target=Target(ip),
            recipients=tuple(c for c in contacts if c.role not in fallback_roles),
            fallbacks=tuple(c for c in contacts if c.role in fallback_roles),
            network=self.network(case),
        )
