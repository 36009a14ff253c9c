"""One typed record class per event kind the ledger holds.

Every class names the fields its event carries and their types. Every field has a default, so
that records written by earlier versions (which left some out) load; fields unknown to a class
are kept as they are, so old logs verify unchanged. A field of the wrong type is refused before
it reaches the chain, and so is an unknown event kind. ``parse`` turns a stored record into its
class; ``Entry.fields`` gives what goes on the line (the writer adds ``seq``, ``time``,
``event``, ``prev``, ``hash`` and the signature).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .chain import Record

if TYPE_CHECKING:
    from ..models import Finding

__all__ = [
    "EVENTS",
    "Ack",
    "Anchor",
    "AnchorFailed",
    "Attempt",
    "Bounce",
    "Entry",
    "Fallback",
    "Followup",
    "FollowupDeferred",
    "Intent",
    "intent_findings",
    "Letter",
    "ManualDone",
    "ManualStep",
    "Note",
    "Outcome",
    "Refusal",
    "Resolution",
    "Suppress",
    "TornTailRecord",
    "check",
    "parse",
]


class Entry(BaseModel):
    """Fields common to every stored record; ``event`` names the class (see ``EVENTS``)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    event: ClassVar[str] = ""

    # set by the writer; None on an entry that is not written yet
    seq: int | None = None
    time: str | None = None
    hash: str | None = None

    def fields(self) -> dict[str, Any]:
        """What the caller writes: everything but the writer's own fields, in JSON form."""
        data = self.model_dump(mode="json")
        for name in ("seq", "time", "hash", "prev", "sig", "key_id", "event"):
            data.pop(name, None)
        return data

    @property
    def moment(self) -> datetime | None:
        """``time`` as a timezone-aware datetime, None when absent or unreadable."""
        if not self.time:
            return None
        try:
            return datetime.fromisoformat(self.time)
        except ValueError:
            return None


class Resolution(Entry):
    """Who owns an address, with provenance: what every later message was based on."""

    event = "resolution"
    ip: str = ""
    # more addresses this same resolution holds for: a batch writes one record for the
    # addresses of a network range that resolved alike, not one each
    ips: list[str] = []
    # those addresses again, each with what is its alone: its host names and the evidence
    # about it alone (its PTR answer), in place of the first address's
    addresses: list[dict[str, Any]] = []
    hostnames: list[str] = []
    network: dict[str, Any] | None = None
    recipients: list[dict[str, Any]] = []
    fallbacks: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    evidence: list[dict[str, Any]] = []


class Intent(Entry):
    """Written before a message is handed over: without its outcome, the send is in doubt."""

    event = "intent"
    attempt_id: str = ""
    ip: str = ""
    recipient: str = ""
    intended_recipient: str | None = None  # a rehearsal: who would have received it
    role: str = ""
    message_id: str = ""
    digest: str = ""
    case: str = ""
    finding_keys: list[str] = []
    finding_texts: list[str] = []
    findings: list[dict[str, Any]] = []
    worker: str | None = None  # the process (claim holder) that wrote it
    language: str = ""  # Content-Language of the message
    language_reason: str = ""  # why that language (the recipient's preference, or none)
    guides: list[str] = []  # exposure guides the message carries


def intent_findings(findings: Sequence[Finding]) -> dict[str, object]:
    """What an intent says of its message's findings: their keys, one line each, and each in
    full, so that a follow-up or a bounce fallback can rebuild them."""
    # a message carries some ten findings an address: each address written out once
    shown = {ip: str(ip) for ip in {f.ip for f in findings}}
    return {
        "finding_keys": [f.key for f in findings],
        "finding_texts": [f"{shown[f.ip]}:{f.port or ''} {f.text}" for f in findings],
        "findings": [
            {
                "ip": shown[f.ip],
                "port": f.port,
                "text": f.text,
                "hostname": f.hostname,
                "observed_at": f.observed_at,
                "extra": [list(pair) for pair in f.extra],
                "service": f.service,
            }
            for f in findings
        ],
    }


class Attempt(Entry):
    """One failed try of an SMTP transaction (the retry that follows is another)."""

    event = "attempt"
    attempt_id: str = ""
    recipient: str = ""
    number: int = 0
    smtp_code: int | None = None
    error: str = ""
    transient: bool = False


class Outcome(Entry):
    """How a handed-over message ended: the server's reply, the status, the digest."""

    event = "outcome"
    attempt_id: str | None = None
    ip: str = ""
    recipient: str = ""
    message_id: str = ""
    digest: str | None = None
    status: str = ""
    smtp_code: int | None = None
    smtp_reply: str | None = None
    attempts: int = 0
    finding_key: str | None = None  # logs of early versions: one finding an outcome
    finding_keys: list[str] = []
    test: bool = False

    def keys(self) -> list[str]:
        return ([self.finding_key] if self.finding_key else []) + list(self.finding_keys)


class Refusal(Entry):
    """A message that was not sent: in doubt, suppressed, or held by a limit, and why."""

    event = "refusal"
    ip: str = ""
    recipient: str = ""
    finding_keys: list[str] = []
    reason: str = ""


class Fallback(Entry):
    """The ladder climbed to ``to``: the reason, and (for a case) its reference."""

    event = "fallback"
    to: str = ""
    role: str = ""
    reason: str = ""
    ip: str | None = None
    ips: list[str] | None = None
    case: str | None = None
    sent_case: str | None = None  # the reference the fallback's own message carried
    findings: int | None = None  # a batch: how many findings went this way
    dsn_id: str | None = None


class Suppress(Entry):
    """Never write to ``recipient`` (an address or ``@domain``) again."""

    event = "suppress"
    recipient: str = ""
    reason: str = ""


class Ack(Entry):
    """The owner answered or fixed the case: follow-ups stop."""

    event = "ack"
    case: str = ""
    note: str = ""


class Followup(Entry):
    """A follow-up to ``level`` for a case, written before any of its messages."""

    event = "followup"
    case: str = ""
    level: str = ""
    ips: list[str] = []
    to: list[str] = []
    reason: str = ""
    in_reply_to: str | None = None
    sent_case: str | None = None


class FollowupDeferred(Entry):
    """A follow-up a sending limit held back: that level was not told."""

    event = "followup-deferred"
    case: str = ""
    level: str = ""
    reason: str = ""


class Bounce(Entry):
    """A delivery status notification matched to a sent message."""

    event = "bounce"
    dsn_id: str = ""
    message_id: str = ""
    attempt_id: str | None = None
    ip: str = ""
    case: str = ""
    recipient: str = ""
    final_recipient: str | None = None
    action: str | None = None
    status: str | None = None
    kind: str = ""
    diagnostic: str | None = None
    reporting_mta: str | None = None
    remote_mta: str | None = None
    matched_by: str | None = None
    contact_gone: bool = False


class Anchor(Entry):
    """An RFC 3161 time-stamp over the head ``N:HASH``, kept as ``token_file``."""

    event = "anchor"
    head: str = ""
    tsa: str = ""
    token_file: str = ""
    token_sha256: str = ""
    gen_time: str | None = None


class AnchorFailed(Entry):
    event = "anchor-failed"
    tsa: str = ""
    error: str = ""


class TornTailRecord(Entry):
    """Bytes of a line a crash cut short, moved aside to ``file`` (never dropped)."""

    event = "torn-tail"
    length: int = 0
    sha256: str = ""
    file: str = ""
    offset: int | None = None
    note: str | None = None


class ManualStep(Entry):
    """A channel that is not e-mail (web form, phone): a report was prepared for a person."""

    event = "manual-step"
    ip: str = ""
    case: str = ""
    channel: str = ""  # the URI the owner published
    kind: str = ""  # web | phone | other
    role: str = ""
    source: str = ""
    report: str = ""  # path of the prepared report
    digest: str = ""  # sha256 of the report


class ManualDone(Entry):
    """The operator submitted a prepared report through its channel."""

    event = "manual-done"
    case: str = ""
    channel: str = ""
    note: str = ""


class Letter(Entry):
    """A postal letter rendered for a case."""

    event = "letter"
    case: str = ""
    ip: str = ""
    recipient: str = ""
    address_lines: list[str] = []
    path: str = ""
    digest: str = ""  # sha256 of the PDF


class Note(Entry):
    """A free-form remark an operator adds to the evidence."""

    event = "note"
    text: str = ""


EVENTS: dict[str, type[Entry]] = {
    cls.event: cls
    for cls in (
        Resolution,
        Intent,
        Attempt,
        Outcome,
        Refusal,
        Fallback,
        Suppress,
        Ack,
        Followup,
        FollowupDeferred,
        Bounce,
        Anchor,
        AnchorFailed,
        TornTailRecord,
        Note,
        ManualStep,
        ManualDone,
        Letter,
    )
}


def check(event: str, fields: Record) -> None:
    """Refuse (``ValueError``) fields that do not fit ``event``'s record class."""
    cls = EVENTS.get(event)
    if cls is None:
        raise ValueError(f"unknown audit event kind: {event!r}")
    try:
        cls.model_validate(fields, strict=False)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or event
        raise ValueError(f"bad {event} record: {where}: {first['msg']}") from None


def parse(record: Record) -> Entry | None:
    """A stored record as its class; None for a kind this version does not know or a record
    whose fields do not fit (a damaged or foreign line: ``verify`` names it, readers skip it)."""
    cls = EVENTS.get(str(record.get("event")))
    if cls is None:
        return None
    try:
        return cls.model_validate(record)
    except ValidationError:
        return None
