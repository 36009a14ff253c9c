"""The read model: what the rest of the tool asks of the log, folded from its records in order.

One pass answers every question the senders, follow-ups, bounces and the review commands ask:
what was delivered to whom, which intents are in doubt, who asked not to be written to, how
many messages a recipient got since a moment, the cases with their messages, follow-ups,
acknowledgements and bounces, and the resolutions those cases were based on.

``ReadModel.add`` takes records one by one, so a model can be kept current by feeding it what
the log gained since (``Ledger.view()`` does that: ``view.refresh()``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from ..addresses import clean_address, header_text
from ..models import Contact, Delivery, DeliveryStatus, Finding
from .casestate import CaseLadder, CaseState, MessageState
from .chain import Record
from .rebuild import findings_of, verp_id
from .records import (
    Ack,
    Bounce,
    Fallback,
    Followup,
    FollowupDeferred,
    Intent,
    Outcome,
    Refusal,
    Resolution,
    Suppress,
    parse,
)

__all__ = ["CaseState", "MessageState", "ReadModel", "normalise_case", "strip_id"]

# the only records a lean model (what may be sent) folds
_LEAN_EVENTS = frozenset({Intent.event, Outcome.event, Suppress.event})


def normalise_case(text: str) -> str:
    """A case reference as the log stores it (``ntf-abc`` -> ``NTF-ABC``)."""
    return header_text(text, 64).strip().upper()


def strip_id(value: str | None) -> str:
    """A Message-ID without its angle brackets."""
    return value.strip().strip("<>") if value else ""


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _address(recipient: str) -> str | None:
    """The recipient of an intent as a message's address; None when it is none at all.

    A stored address that ``clean_address`` now refuses (a placeholder a registry published,
    say) was still written to: it stays, as written.
    """
    if "@" not in recipient:
        return None
    return clean_address(recipient) or header_text(recipient, 254)


def _as_written(finding: Finding) -> Record:
    """A finding in the shape intents store it now (ip, port, text and the rest empty)."""
    return {
        "ip": str(finding.ip),
        "port": finding.port,
        "text": finding.text,
        "hostname": None,
        "observed_at": None,
        "extra": [],
        "service": None,
    }


def _packed(key: str) -> bytes | str:
    if len(key) == 64:
        try:
            return bytes.fromhex(key)
        except ValueError:
            pass
    return key  # not a SHA-256 in hex (a hand-written or foreign record): kept as it is


class ReadModel(CaseLadder):
    """Everything the log says, folded in order; feed it records with ``add``."""

    def __init__(self, *, lean: bool = False) -> None:
        self.lean = lean  # sending's questions only: no cases, messages or timelines
        self.records = 0
        # recipient -> the finding keys delivered there, as 32 raw bytes (a key is a SHA-256 in
        # hex): a million-finding log holds a million of these, at a third of a tuple's size
        self._delivered: dict[str, set[bytes | str]] = {}
        self.open_intents: dict[str, Intent] = {}  # attempt_id -> intent with no outcome yet
        self._doubt: dict[tuple[str, str], list[str]] = {}  # pair -> open intents' attempt ids
        self.suppressed: set[str] = set()  # addresses and @domains
        self.deliveries: dict[str, list[datetime]] = {}  # recipient -> delivered-at times
        self.cases: dict[str, CaseState] = {}
        self.resolutions: dict[str, Resolution] = {}  # ip -> the latest resolution
        self.messages: dict[str, MessageState] = {}  # Message-ID -> message
        self.attempts: dict[str, MessageState] = {}  # attempt_id -> message
        self.refusals: list[Refusal] = []
        self.dsn_ids: set[str] = set()
        self.aliases: dict[str, str] = {}  # a fallback's own case reference -> the case's
        self._verp: dict[str, MessageState] | None = None  # VERP id -> message, on demand

    @classmethod
    def of(cls, records: Iterable[Record]) -> ReadModel:
        model = cls()
        for record in records:
            model.add(record)
        return model

    # ---------------------------------------------------------------- questions

    @property
    def delivered(self) -> set[tuple[str, str]]:
        """Every ``(finding key, recipient)`` delivered, built on demand (for review only)."""
        return {
            (k.hex() if isinstance(k, bytes) else k, r)
            for r, keys in self._delivered.items()
            for k in keys
        }

    def prior(self, finding_key: str, recipient: str) -> str | None:
        """What the log says of this finding for this recipient: delivered, in-doubt or None."""
        return self.priors([finding_key], recipient)[0]

    def priors(self, finding_keys: Sequence[str], recipient: str) -> list[str | None]:
        """``prior`` of each finding, for one recipient (a message's findings asked together:
        ten thousand asked one by one cost 25 ms of a batch's delivery)."""
        recipient = recipient.lower()
        delivered, doubt = self._delivered.get(recipient, ()), self._doubt
        return [
            "delivered"
            if _packed(key) in delivered
            else "in-doubt"
            if (key, recipient) in doubt
            else None
            for key in finding_keys
        ]

    def in_doubt(self) -> list[Intent]:
        """Intents with no outcome: the process stopped between handing over and recording."""
        return list(self.open_intents.values())

    def in_doubt_pairs(self) -> set[tuple[str, str]]:
        return set(self._doubt)

    def open_for(self, finding_key: str, recipient: str) -> list[Intent]:
        """The intents without outcome that name this finding for this recipient."""
        ids = self._doubt.get((finding_key, recipient.lower()), [])
        return [self.open_intents[a] for a in ids if a in self.open_intents]

    def is_suppressed(self, address: str) -> bool:
        """The address, or its whole domain, asked not to be written to."""
        address = address.lower()
        return address in self.suppressed or f"@{address.rpartition('@')[2]}" in self.suppressed

    def sent_since(self, recipient: str, since: datetime) -> int:
        """Messages delivered to ``recipient`` at or after ``since`` (the daily cap's count)."""
        since = _aware(since) or since
        return sum(1 for moment in self.deliveries.get(recipient.lower(), ()) if moment >= since)

    def canonical(self, ref: str) -> str:
        ref = normalise_case(ref)
        return self.aliases.get(ref, ref)

    def case(self, ref: str) -> CaseState | None:
        return self.cases.get(self.canonical(ref))

    def message(self, message_id: str) -> MessageState | None:
        return self.messages.get(strip_id(message_id))

    def bounces(self) -> list[Bounce]:
        return [b for case in self.cases.values() for b in case.bounces]

    def attempt(self, attempt_id: str) -> MessageState | None:
        return self.attempts.get(attempt_id.strip())

    def by_verp(self, identifier: str) -> MessageState | None:
        """The message whose return path carried this VERP id."""
        if self._verp is None:
            self._verp = {verp_id(m.message_id, m.address): m for m in self.messages.values()}
        return self._verp.get(identifier.strip().lower())

    def due(self, *, now: datetime, after_days: float) -> list[CaseState]:
        """Cases a follow-up run at ``now`` acts on: overdue and unacknowledged, in log order."""
        wait = timedelta(days=after_days)
        due = []
        for case in list(self.cases.values()):
            last = case.last_notice()
            if not case.acked and last is not None and now - last >= wait:
                due.append(case)
        return due

    def note_delivery(self, case: CaseState, contact: Contact, delivery: Delivery) -> None:
        """Remember a delivery this run made, so its later decisions see it (a dry run's
        rehearsal counts as reaching); the log gets the real records from the sender."""
        if delivery.status == DeliveryStatus.ALREADY_SENT or not delivery.message_id:
            return
        sent = MessageState(
            message_id=strip_id(delivery.message_id),
            recipient=contact.address.lower(),
            role=str(contact.role),
            case=case.ref,
            ip=case.ips[0] if case.ips else "",
            attempt_id="",
            status="failed" if delivery.status == DeliveryStatus.FAILED else "delivered",
            address=contact.address,
        )
        case.messages.append(sent)
        self.messages[sent.message_id] = sent
        self._verp = None

    # ---------------------------------------------------------------- folding

    def add(self, record: Record) -> None:
        """Take one stored record into account (records must come in log order)."""
        self.records += 1
        if self.lean and record.get("event") not in _LEAN_EVENTS:
            return  # not read at all: a batch's log is mostly resolutions, each a large record
        entry = parse(record)
        if entry is None or (self.lean and not isinstance(entry, Intent | Outcome | Suppress)):
            return
        if isinstance(entry, Intent):
            self._intent(entry)
        elif isinstance(entry, Outcome):
            self._outcome(entry)
        elif isinstance(entry, Suppress):
            self.suppressed.add(entry.recipient.strip().lower())
        elif isinstance(entry, Resolution):
            # a batch writes one record for every address of a range that resolved alike
            for ip in (entry.ip, *entry.ips):
                if ip:
                    self.resolutions[ip] = entry
        elif isinstance(entry, Refusal):
            self.refusals.append(entry)
        elif isinstance(entry, Ack):
            case = self.case(entry.case)
            if case is not None:
                case.acked, case.acked_at, case.ack_note = True, _aware(entry.moment), entry.note
                case.timeline.append(entry)
        elif isinstance(entry, Followup | Fallback):
            self._ladder(entry)
        elif isinstance(entry, FollowupDeferred):
            self._deferred(entry)
        elif isinstance(entry, Bounce):
            self._bounce(entry)

    def _intent(self, intent: Intent) -> None:
        recipient = intent.recipient.lower()
        if intent.attempt_id not in self.open_intents:
            self.open_intents[intent.attempt_id] = intent
            for key in intent.finding_keys:
                self._doubt.setdefault((key, recipient), []).append(intent.attempt_id)
        if self.lean:
            return
        message_id = strip_id(intent.message_id)
        ref = normalise_case(intent.case)
        address = _address(intent.recipient)
        if not message_id or not ref or address is None:
            return  # a damaged line: no message a case could be rebuilt from
        sent = MessageState(
            message_id=message_id,
            recipient=address.lower(),
            role=header_text(intent.role, 40),
            case=self.canonical(ref),
            ip=header_text(intent.ip, 64),
            attempt_id=intent.attempt_id,
            digest=intent.digest,
            sent_at=_aware(intent.moment),
            test=bool(intent.intended_recipient),
            finding_keys=tuple(intent.finding_keys),
            address=address,
        )
        self.messages[message_id] = sent
        self.attempts[intent.attempt_id] = sent
        self._verp = None
        if sent.test:
            return
        case = self.cases.get(sent.case)
        if case is None:
            case = self.cases[sent.case] = CaseState(sent.case, opened=sent.sent_at)
        case.add_intent(intent, sent)
        # an older intent carries its findings as text lines only: read back, shown as they say
        rebuilt = [] if intent.findings else findings_of(intent)
        shown = intent.findings or [_as_written(f) for f in rebuilt]
        for ip in [sent.ip, *(str(f.get("ip", "")) for f in shown)]:
            if ip and ip not in case.ips:
                case.ips.append(ip)
        keys = intent.finding_keys or [f.key for f in rebuilt]
        for key, finding in zip(keys, shown, strict=False):
            case.findings.setdefault(key, finding)

    def _outcome(self, outcome: Outcome) -> None:
        recipient = outcome.recipient.lower()
        keys = outcome.keys()
        intent = self.open_intents.pop(outcome.attempt_id, None) if outcome.attempt_id else None
        if intent is not None:
            for key in intent.finding_keys:
                pair = (key, intent.recipient.lower())
                left = [a for a in self._doubt.get(pair, []) if a != intent.attempt_id]
                if left:
                    self._doubt[pair] = left
                else:
                    self._doubt.pop(pair, None)
        delivered = outcome.status == "delivered"
        if delivered:
            if not outcome.test:
                self._delivered.setdefault(recipient, set()).update(_packed(k) for k in keys)
            moment = _aware(outcome.moment)
            if moment is not None:
                self.deliveries.setdefault(recipient, []).append(moment)
        sent = self.attempts.get(outcome.attempt_id or "")
        if sent is None:
            return
        sent.status = "delivered" if delivered else "failed"
        sent.smtp_reply = outcome.smtp_reply
        if delivered:
            sent.delivered_at = _aware(outcome.moment)
        case = self.cases.get(sent.case)
        if case is not None:
            case.timeline.append(outcome)
            if outcome.test:
                sent.test = True
                case.messages = [m for m in case.messages if m is not sent]
                if not case.messages:
                    del self.cases[sent.case]

    def _ladder(self, entry: Followup | Fallback) -> None:
        ref = normalise_case(entry.case or "")
        alias = normalise_case(entry.sent_case or "")
        if ref and alias and alias != ref:
            self.aliases[alias] = self.canonical(ref)
        case = self.case(ref) if ref else None
        if case is None:
            return
        case.timeline.append(entry)
        if isinstance(entry, Followup):
            case.followups.append((_aware(entry.moment), entry.level))
        else:
            case.fallbacks.append(entry)

    def _deferred(self, entry: FollowupDeferred) -> None:
        case = self.case(entry.case)
        if case is None:
            return
        case.timeline.append(entry)
        # the follow-up was refused by a sending limit before anything went out
        for index in range(len(case.followups) - 1, -1, -1):
            if case.followups[index][1] == entry.level:
                del case.followups[index]
                break

    def _bounce(self, bounce: Bounce) -> None:
        if bounce.dsn_id:
            self.dsn_ids.add(bounce.dsn_id)
        sent = self.message(bounce.message_id)
        if sent is not None and bounce.contact_gone:
            sent.bounced = True
        case = self.case(bounce.case) if bounce.case else None
        if case is None and sent is not None:
            case = self.cases.get(sent.case)
        if case is not None:
            case.bounces.append(bounce)
            case.timeline.append(bounce)
