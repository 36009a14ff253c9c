"""Escalation over time: remind, then climb the ladder owner → network abuse desk → national CERT.

Everything is decided from the audit log alone, so ``followup`` can run from cron as often as
one likes: a case is followed up when its last notice is ``followup.after_days`` old and nobody
acknowledged it (``ack``), and it then goes to the next rung of the ladder that was not yet told
about it. A ``followup`` record (case, level, recipients, reason) is written *before* the message
is handed to the mail server, so even a crash mid-send never escalates the same case to the same
level twice. Once every rung was told, the case is reported as exhausted and nothing is resent:
repeating the same message to the same people does not help; a different recipient does.

The rungs are levels, not single contacts: ``owner`` (an operator override, security.txt or the
host's own mailbox), ``network`` (the registry's abuse desk; the domain's registrar stands in
when there is none) and ``cert`` (the national CERT from the resolution's fallbacks). A level is
reached once one of its contacts accepted a message about the case. Contacts that already
refused or bounced the case are skipped, and a follow-up to a level all of whose contacts fail
permanently climbs on to the next level in the same run, as ``send`` does.

Each follow-up is threaded to the first message of the case (``In-Reply-To``) and names every
earlier message of it (``References``), so a ticket system files it with the original report.

Addresses on the suppression list are off the ladder. When a sending limit (the per-run cap or a
recipient's daily cap) refuses a follow-up, a ``followup-deferred`` record takes the level back
and the case stays due, so the next run tries again; a run that reached its cap leaves the
remaining cases untouched and reports them ``DEFERRED``.

:class:`CaseBook` is the read side both this module and :mod:`notifier.bounces` use: one pass
over the log gives every case, its messages, their fate and the contacts the resolution offered.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from .addresses import clean_address, header_text
from .compose import ComposedMessage
from .config import Settings
from .errors import ConfigError
from .ladder import SendOptions
from .ledger import Ledger, open_ledger
from .models import (
    Contact,
    Delivery,
    DeliveryStatus,
    Finding,
    Network,
    Resolution,
    Role,
    Target,
)
from .pipeline import Notifier, SendResult
from .sources import utcnow

__all__ = [
    "LEVELS",
    "Case",
    "CaseBook",
    "FollowupAction",
    "FollowupStatus",
    "SentMessage",
    "ack",
    "contact_of",
    "due_cases",
    "findings_of",
    "followup",
    "normalise_case",
    "level_of",
    "verp_id",
]

LEVELS: tuple[str, ...] = ("owner", "network", "cert")
"""The rungs of the escalation ladder, lowest first."""

_LEVEL_OF_ROLE = {
    Role.OVERRIDE: "owner",
    Role.OWNER: "owner",
    Role.NETWORK: "network",
    Role.REGISTRAR: "network",
    Role.NATIONAL_CERT: "cert",
}
_NOTE_LIMIT = 1000
# a hand-edited or damaged log must not make one case rebuild into millions of findings
_MAX_FINDINGS_PER_INTENT = 10_000

Record = dict[str, Any]
Clock = Callable[[], datetime]


def level_of(role: object) -> str | None:
    """The ladder level of a contact role (``"owner"``, ``"network"``, ``"cert"``), or None."""
    try:
        return _LEVEL_OF_ROLE[Role(str(role))]
    except ValueError:
        return None


def verp_id(message_id: str, recipient: str) -> str:
    """The VERP id ``deliver.envelope_sender`` puts in the return path of this message.

    ``message_id`` with or without its angle brackets; the id is made over the bracketed form.
    """
    seed = f"<{_strip_id(message_id)}>|{clean_address(recipient) or recipient}".encode()
    return hashlib.sha256(seed).hexdigest()[:12]


def normalise_case(text: str) -> str:
    """A case reference as the log stores it (``ntf-abc`` → ``NTF-ABC``)."""
    return header_text(text, 64).strip().upper()


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _strip_id(value: object) -> str:
    return value.strip().strip("<>") if isinstance(value, str) else ""


def _string(value: object, limit: int = 500) -> str:
    return header_text(value, limit) if isinstance(value, str) else ""


# --------------------------------------------------------------------------- rebuilding


def _finding(item: object) -> Finding | None:
    if not isinstance(item, dict):
        return None
    text = item.get("text")
    port = item.get("port")
    hostname = item.get("hostname")
    extra = item.get("extra")
    try:
        ip = ipaddress.ip_address(str(item.get("ip", "")))
    except ValueError:
        return None
    if not isinstance(text, str) or not text:
        return None
    pairs: list[tuple[str, str]] = []
    if isinstance(extra, list):
        for pair in extra:
            if isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair):
                pairs.append((pair[0], pair[1]))
    return Finding(
        ip,
        text,
        port=port if isinstance(port, int) and not isinstance(port, bool) else None,
        hostname=hostname if isinstance(hostname, str) and hostname else None,
        observed_at=_time(item.get("observed_at")),
        extra=tuple(pairs),
    )


def _finding_from_text(line: object) -> Finding | None:
    """A finding from an older intent's ``"ip:port text"`` line (port may be empty)."""
    if not isinstance(line, str):
        return None
    where, _, text = line.partition(" ")
    # rpartition: an IPv6 address holds colons of its own, the port is after the last one
    address, _, port = where.rpartition(":")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if not text or (port and not port.isdigit()):
        return None
    return Finding(ip, text, port=int(port) if port else None)


def findings_of(record: Record) -> list[Finding]:
    """The findings an intent record was about (structured ``findings``, else ``finding_texts``)."""
    structured = record.get("findings")
    if isinstance(structured, list):
        items = [_finding(item) for item in structured[:_MAX_FINDINGS_PER_INTENT]]
    else:
        texts = record.get("finding_texts")
        lines = texts[:_MAX_FINDINGS_PER_INTENT] if isinstance(texts, list) else []
        items = [_finding_from_text(line) for line in lines]
    return [f for f in items if f is not None]


def contact_of(item: object) -> Contact | None:
    """A contact as ``pipeline.contact_record`` wrote it, or None if it is not one."""
    if not isinstance(item, dict):
        return None
    address = clean_address(str(item.get("address", "")))
    try:
        role = Role(str(item.get("role", "")))
    except ValueError:
        return None
    if address is None:
        return None
    confidence = item.get("confidence")
    sources = item.get("sources")
    provenance = item.get("provenance")
    return Contact(
        address=address,
        role=role,
        sources=tuple(_string(s, 100) for s in sources if isinstance(s, str))
        if isinstance(sources, list)
        else (),
        confidence=float(confidence) if isinstance(confidence, int | float) else 0.0,
        provenance=tuple(_string(p) for p in provenance if isinstance(p, str))
        if isinstance(provenance, list)
        else (),
        name=_string(item.get("name"), 200),
    )


def _network_of(value: object) -> Network | None:
    if not isinstance(value, dict):
        return None
    known = {f.name for f in fields(Network)}
    values: dict[str, Any] = {}
    for name, item in value.items():
        if name not in known:
            continue
        if name == "cidrs":
            values[name] = tuple(str(c) for c in item) if isinstance(item, list) else ()
        elif name == "asn":
            values[name] = item if isinstance(item, int) and not isinstance(item, bool) else None
        else:
            values[name] = _string(item)
    if "registry" not in values:
        return None
    return Network(**values)


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


# --------------------------------------------------------------------------- acknowledging


def _log_for(target: Notifier | Ledger | Settings, clock: Clock) -> Ledger:
    if isinstance(target, Notifier):
        return target.audit
    if isinstance(target, Ledger):
        return target
    return open_ledger(target, clock=clock)


def ack(
    target: Notifier | Ledger | Settings,
    case_ref: str,
    *,
    note: str = "",
    clock: Clock = utcnow,
) -> Record:
    """Record that the owner answered or fixed case ``case_ref``: follow-ups stop for it.

    ``target`` is the Notifier, the audit log itself, or the settings naming it (``clock`` then
    stamps the record; otherwise the log's own clock does). Returns the ``ack`` record written.
    Raises ``ConfigError`` when the log holds no case with that reference.
    """
    log = _log_for(target, clock)
    wanted = normalise_case(case_ref)
    if not wanted:
        raise ConfigError("no case reference given")
    case = CaseBook.from_log(log).case(wanted)
    if case is None:
        raise ConfigError(f"no case {wanted} in the audit log")
    return log.append("ack", case=case.ref, note=header_text(note, _NOTE_LIMIT))


# --------------------------------------------------------------------------- following up


class FollowupStatus(StrEnum):
    SENT = "sent"  # a contact of the next level accepted the follow-up
    FAILED = "failed"  # every remaining level was tried and nobody accepted it
    EXHAUSTED = "exhausted"  # every level was already told: reported, nothing sent
    DRY_RUN = "dry-run"  # what would be sent, rendered but not sent
    DEFERRED = "deferred"  # a sending limit refused it: the next run tries again
    UNREADABLE = "unreadable"  # the log does not hold the findings to rebuild the message from


@dataclass(slots=True)
class FollowupAction:
    """What ``followup`` did about one overdue, unacknowledged case."""

    case: str
    ips: tuple[str, ...]
    status: FollowupStatus
    last_notice: datetime
    level: str | None = None  # the level the follow-up went to (the last one tried)
    recipients: tuple[str, ...] = ()
    reason: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    messages: list[ComposedMessage] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status in (FollowupStatus.FAILED, FollowupStatus.UNREADABLE)


def _days(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def due_cases(book: CaseBook, *, now: datetime, after_days: float) -> list[Case]:
    """Cases a follow-up run at ``now`` would act on: overdue and unacknowledged, in log order."""
    wait = timedelta(days=after_days)
    due = []
    for case in list(book.cases.values()):
        last = case.last_notice()
        if not case.acked and last is not None and now - last >= wait:
            due.append(case)
    return due


_REACHED = frozenset(
    {
        DeliveryStatus.DELIVERED,
        DeliveryStatus.ALREADY_SENT,
        DeliveryStatus.IN_DOUBT,
        DeliveryStatus.DRY_RUN,
    }
)


async def followup(
    notifier: Notifier, *, now: datetime, dry_run: bool = False
) -> list[FollowupAction]:
    """Follow up every case whose last notice is ``followup.after_days`` old and unacknowledged.

    Each goes to the next ladder level not yet told about it (see the module docstring), threaded
    to the case's first message. Cases whose ladder is exhausted are returned with status
    ``EXHAUSTED`` and nothing is sent. ``now`` is the only notion of time used for deciding what
    is due; with ``dry_run`` the messages are rendered and nothing is sent or recorded.
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    after = notifier.settings.followup.after_days
    book = CaseBook.from_log(notifier.audit)
    reason = f"no acknowledgement {_days(after)} days after the last notice"
    actions: list[FollowupAction] = []
    for case in due_cases(book, now=now, after_days=after):
        last = case.last_notice()
        assert last is not None
        if not dry_run and notifier.sent_this_run >= notifier.max_messages:
            # nothing recorded: the case stays due and the next run picks it up
            actions.append(
                FollowupAction(
                    case.ref,
                    tuple(case.ips),
                    FollowupStatus.DEFERRED,
                    last,
                    reason=f"run cap reached: {notifier.max_messages} messages",
                )
            )
            continue
        actions.append(await _escalate(notifier, book, case, last, reason, dry_run))
    return actions


async def _escalate(
    notifier: Notifier,
    book: CaseBook,
    case: Case,
    last: datetime,
    reason: str,
    dry_run: bool,
) -> FollowupAction:
    ips = tuple(case.ips)
    reached = case.levels_reached()
    top = max((LEVELS.index(level) for level in reached), default=-1)
    # a contact that refused or bounced this case already is no way to reach anyone
    dead = {m.recipient.lower() for m in case.messages if m.status == "failed" or m.bounced}
    rungs = [
        (level, [c for c in book.contacts_at(case, level) if c.address.lower() not in dead])
        for level in LEVELS[top + 1 :]
    ]
    rungs = [(level, contacts) for level, contacts in rungs if contacts]
    if not rungs:
        told = ", ".join(level for level in LEVELS if level in reached)
        return FollowupAction(
            case.ref,
            ips,
            FollowupStatus.EXHAUSTED,
            last,
            reason=f"every level with a known contact was told ({told}): nobody left to tell",
        )
    findings = list(case.findings.values())
    thread = case.thread()
    if not findings or not thread:
        return FollowupAction(
            case.ref,
            ips,
            FollowupStatus.UNREADABLE,
            last,
            reason="the audit log does not hold this case's findings or messages",
        )
    network = book.network(case)
    result = SendResult(book.resolution(case))
    action = FollowupAction(case.ref, ips, FollowupStatus.FAILED, last)
    for level, contacts in rungs:
        action.level = level
        action.recipients = tuple(c.address for c in contacts)
        action.reason = reason
        if not dry_run:
            # written before any SMTP: a crash now still counts this level as told
            notifier.audit.append(
                "followup",
                case=case.ref,
                ips=list(ips),
                level=level,
                to=list(action.recipients),
                reason=reason,
                in_reply_to=f"<{thread[0]}>",
            )
        statuses = []
        options = SendOptions(
            dry_run=dry_run,
            in_reply_to=f"<{thread[0]}>",
            references=tuple(f"<{m}>" for m in thread),
            case_ref=case.ref,  # the follow-up carries the case's own reference
        )
        for contact in contacts:
            mine = book.findings_for(case, contact)
            delivery = await notifier.deliver(contact, mine, network, result, options)
            book.note_delivery(case, contact, delivery)
            statuses.append(delivery.status)
        if any(status in _REACHED for status in statuses):
            action.status = FollowupStatus.DRY_RUN if dry_run else FollowupStatus.SENT
            break
        if DeliveryStatus.HELD_BACK in statuses:
            # a daily or per-run cap said no: this level was not told, so it must not count
            notifier.audit.append(
                "followup-deferred",
                case=case.ref,
                level=level,
                reason="refused by a sending limit (see the refusal record)",
            )
            action.status = FollowupStatus.DEFERRED
            action.reason = f"a sending limit refused the follow-up to the {level} level"
            break
        reason = f"every contact at the {level} level failed"
    action.deliveries = list(result.deliveries)
    action.messages = list(result.messages)
    return action
