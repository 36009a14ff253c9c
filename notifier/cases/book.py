"""The case book: every case, its messages and their fate, read from the audit log in one pass.

``followup`` and ``bounces`` both decide from it: one pass over the log gives every case, its
messages, their fate and the contacts the resolutions offered.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from ..addresses import clean_address
from ..ledger import Ledger
from ..models import (
    Contact,
    Delivery,
    DeliveryStatus,
    Finding,
    Network,
    Resolution,
    Role,
    Target,
)
from .records import (
    LEVELS,
    Record,
    _network_of,
    _string,
    _strip_id,
    _time,
    contact_of,
    findings_of,
    level_of,
    normalise_case,
    verp_id,
)

__all__ = ["Case", "CaseBook", "SentMessage"]

# --------------------------------------------------------------------------- the case book


@dataclass(slots=True)
class SentMessage:
    """One message handed (or about to be handed) to the mail server, as the log tells it."""

    message_id: str
    recipient: str
    role: str
    case: str
    ip: str
    attempt_id: str = ""
    test: bool = False
    status: str = "pending"  # delivered / failed / pending (intent without outcome: in doubt)
    delivered_at: datetime | None = None
    bounced: bool = False  # a permanent DSN came back: the contact is gone

    @property
    def level(self) -> str | None:
        return level_of(self.role)

    @property
    def reached(self) -> bool:
        """Still counts as having reached its recipient.

        A message in doubt (intent without outcome) counts: the pipeline refuses to resend it,
        so falling back past it would be acting on a guess.
        """
        return not self.bounced and self.status != "failed"


@dataclass(slots=True)
class Case:
    """Every real (non-rehearsal) message about one case reference, with what became of it."""

    ref: str
    ips: list[str] = field(default_factory=list)
    findings: dict[str, Finding] = field(default_factory=dict)
    messages: list[SentMessage] = field(default_factory=list)
    followups: list[tuple[datetime | None, str]] = field(default_factory=list)
    acked: bool = False

    def delivered(self) -> list[SentMessage]:
        return [m for m in self.messages if m.status == "delivered"]

    def levels_reached(self) -> set[str]:
        """Levels told about the case: a delivered message, or a follow-up already recorded."""
        levels = {m.level for m in self.delivered() if m.level}
        return levels | {level for _, level in self.followups}

    def last_notice(self) -> datetime | None:
        """When the case last went out: the latest delivery or recorded follow-up."""
        moments = [m.delivered_at for m in self.delivered() if m.delivered_at is not None]
        moments += [moment for moment, _ in self.followups if moment is not None]
        return max(moments, default=None)

    def thread(self) -> list[str]:
        """Message-IDs of the case's delivered messages, first sent first."""
        return list(dict.fromkeys(m.message_id for m in self.delivered()))

    def attempted(self) -> set[str]:
        """Every address the case was ever sent to (delivered, failed or in doubt)."""
        return {m.recipient.lower() for m in self.messages}


class CaseBook:
    """Cases, messages, resolutions and processed DSNs, read from the audit log in one pass.

    The book can be updated in memory (``note_delivery``, ``SentMessage.bounced``) so that one
    run's decisions see its own earlier ones, in dry runs too.
    """

    def __init__(self) -> None:
        self.cases: dict[str, Case] = {}
        self.resolutions: dict[str, Record] = {}
        self.dsn_ids: set[str] = set()
        self._messages: dict[str, SentMessage] = {}
        self._attempts: dict[str, SentMessage] = {}
        self._verp: dict[str, SentMessage] | None = None
        self._aliases: dict[str, str] = {}
        self._acked: set[str] = set()
        self._suppressed: set[str] = set()

    @classmethod
    def from_records(cls, records: Iterable[Record]) -> CaseBook:
        book = cls()
        for record in records:
            book.add(record)
        for ref in book._acked:
            case = book.case(ref)
            if case is not None:
                case.acked = True
        return book

    @classmethod
    def from_log(cls, log: Ledger) -> CaseBook:
        return cls.from_records(log.records())

    # ---------------------------------------------------------------- reading records

    def _canonical(self, ref: str) -> str:
        return self._aliases.get(ref, ref)

    def add(self, record: Record) -> None:
        """Take one audit record into account (records must come in log order)."""
        event = record.get("event")
        if event == "resolution":
            more = record.get("ips")
            for value in [record.get("ip"), *(more if isinstance(more, list) else [])]:
                ip = _string(value, 64)
                if ip:
                    self.resolutions[ip] = record
        elif event == "intent":
            self._add_intent(record)
        elif event == "outcome":
            sent = self._attempts.get(_string(record.get("attempt_id"), 64))
            if sent is None:
                return
            status = record.get("status")
            sent.status = "delivered" if status == "delivered" else "failed"
            if status == "delivered":
                sent.delivered_at = _time(record.get("time"))
            if record.get("test") is True:
                sent.test = True
                self._drop_from_case(sent)
        elif event == "suppress":
            target = _string(record.get("recipient"), 254).lower()
            if target:
                self._suppressed.add(target)
        elif event == "followup-deferred":
            case = self.cases.get(self._canonical(normalise_case(_string(record.get("case"), 64))))
            level = record.get("level")
            if case is not None:
                # the follow-up was refused by a sending limit before anything went out
                for index in range(len(case.followups) - 1, -1, -1):
                    if case.followups[index][1] == level:
                        del case.followups[index]
                        break
        elif event in ("followup", "fallback"):
            ref = normalise_case(_string(record.get("case"), 64))
            alias = normalise_case(_string(record.get("sent_case"), 64))
            if ref and alias and alias != ref:
                self._aliases[alias] = self._canonical(ref)
            if event == "followup" and ref:
                case = self.cases.get(self._canonical(ref))
                level = record.get("level")
                if case is not None and level in LEVELS:
                    case.followups.append((_time(record.get("time")), str(level)))
        elif event == "ack":
            ref = normalise_case(_string(record.get("case"), 64))
            if ref:
                self._acked.add(self._canonical(ref))
        elif event == "bounce":
            dsn = _string(record.get("dsn_id"), 998)
            if dsn:
                self.dsn_ids.add(dsn)
            if record.get("contact_gone") is True:
                sent = self.message(_string(record.get("message_id"), 998))
                if sent is not None:
                    sent.bounced = True

    def _add_intent(self, record: Record) -> None:
        message_id = _strip_id(record.get("message_id"))
        ref = normalise_case(_string(record.get("case"), 64))
        recipient = clean_address(str(record.get("recipient", "")))
        if not message_id or not ref or recipient is None:
            return
        sent = SentMessage(
            message_id=message_id,
            recipient=recipient,
            role=_string(record.get("role"), 40),
            case=self._canonical(ref),
            ip=_string(record.get("ip"), 64),
            attempt_id=_string(record.get("attempt_id"), 64),
            # a rehearsal (--test-recipient) is evidence, not a notice to anyone on the ladder
            test=bool(record.get("intended_recipient")),
        )
        self._messages[message_id] = sent
        if sent.attempt_id:
            self._attempts[sent.attempt_id] = sent
        self._verp = None
        if sent.test:
            return
        case = self.cases.setdefault(sent.case, Case(sent.case))
        case.messages.append(sent)
        if sent.ip and sent.ip not in case.ips:
            case.ips.append(sent.ip)
        for finding in findings_of(record):
            case.findings.setdefault(finding.key, finding)
            if str(finding.ip) not in case.ips:
                case.ips.append(str(finding.ip))

    def _drop_from_case(self, sent: SentMessage) -> None:
        case = self.cases.get(sent.case)
        if case is None:
            return
        case.messages = [m for m in case.messages if m is not sent]
        if not case.messages:
            del self.cases[sent.case]

    # ---------------------------------------------------------------- lookups

    def case(self, ref: str) -> Case | None:
        return self.cases.get(self._canonical(normalise_case(ref)))

    def message(self, message_id: str) -> SentMessage | None:
        """The message with this Message-ID (angle brackets optional)."""
        return self._messages.get(_strip_id(message_id))

    def attempt(self, attempt_id: str) -> SentMessage | None:
        return self._attempts.get(attempt_id.strip())

    def by_verp(self, identifier: str) -> SentMessage | None:
        """The message whose return path carried this VERP id."""
        if self._verp is None:
            self._verp = {verp_id(m.message_id, m.recipient): m for m in self._messages.values()}
        return self._verp.get(identifier.strip().lower())

    def suppressed(self, address: str) -> bool:
        """The address (or its whole domain) asked not to be written to (``notify suppress``)."""
        address = address.lower()
        return address in self._suppressed or f"@{address.rpartition('@')[2]}" in self._suppressed

    def _offered(self, case: Case, groups: tuple[str, ...]) -> list[Contact]:
        seen: dict[str, Contact] = {}
        for ip in case.ips:
            record = self.resolutions.get(ip)
            if record is None:
                continue
            for group in groups:
                items = record.get(group)
                for item in items if isinstance(items, list) else []:
                    contact = contact_of(item)
                    # a suppressed address is off the ladder: the level goes on without it
                    if contact is not None and not self.suppressed(contact.address):
                        seen.setdefault(contact.address.lower(), contact)
        return list(seen.values())

    def contacts(self, case: Case) -> list[Contact]:
        """Every contact the resolutions of the case's addresses offered, recipients first."""
        return self._offered(case, ("recipients", "fallbacks"))

    def findings_for(self, case: Case, contact: Contact) -> list[Finding]:
        """The case's findings about addresses whose resolution named ``contact``.

        A case can span networks in several countries (a batch message to one abuse desk): each
        national CERT, or each desk, is told only about the addresses it is responsible for.
        When no resolution named it (a damaged or early log), it gets the whole case.
        """
        address = contact.address.lower()
        mine: set[str] = set()
        for ip in case.ips:
            record = self.resolutions.get(ip)
            if record is None:
                continue
            for group in ("recipients", "fallbacks"):
                items = record.get(group)
                for item in items if isinstance(items, list) else []:
                    if isinstance(item, dict) and str(item.get("address", "")).lower() == address:
                        mine.add(ip)
        findings = list(case.findings.values())
        return [f for f in findings if str(f.ip) in mine] or findings

    def fallbacks(self, case: Case) -> list[Contact]:
        """The resolutions' fallback ladder (registrar, national CERT) for the case, in order."""
        return self._offered(case, ("fallbacks",))

    def contacts_at(self, case: Case, level: str) -> list[Contact]:
        """The contacts of one ladder level; the registrar only where no abuse desk is known."""
        at_level = [c for c in self.contacts(case) if level_of(c.role) == level]
        if level == "network":
            desks = [c for c in at_level if c.role == Role.NETWORK]
            return desks or at_level
        return at_level

    def network(self, case: Case) -> Network | None:
        for ip in case.ips:
            record = self.resolutions.get(ip)
            if record is not None:
                network = _network_of(record.get("network"))
                if network is not None:
                    return network
        return None

    def resolution(self, case: Case) -> Resolution:
        """A resolution rebuilt from the log, to carry this run's deliveries in a SendResult."""
        # the unspecified address stands in only for a damaged log whose intents lack an address
        ip = ipaddress.ip_address(case.ips[0]) if case.ips else ipaddress.IPv4Address(0)
        contacts = self.contacts(case)
        fallback_roles = (Role.REGISTRAR, Role.NATIONAL_CERT)
        return Resolution(
            target=Target(ip),
            recipients=tuple(c for c in contacts if c.role not in fallback_roles),
            fallbacks=tuple(c for c in contacts if c.role in fallback_roles),
            network=self.network(case),
        )

    # ---------------------------------------------------------------- this run's own sends

    def note_delivery(self, case: Case, contact: Contact, delivery: Delivery) -> None:
        """Remember a delivery made in this run (a dry run's rehearsal counts as reaching)."""
        if delivery.status == DeliveryStatus.ALREADY_SENT or not delivery.message_id:
            return
        sent = SentMessage(
            message_id=_strip_id(delivery.message_id),
            recipient=contact.address,
            role=str(contact.role),
            case=case.ref,
            ip=case.ips[0] if case.ips else "",
            status="failed" if delivery.status == DeliveryStatus.FAILED else "delivered",
        )
        case.messages.append(sent)
        self._messages[sent.message_id] = sent
        self._verp = None
