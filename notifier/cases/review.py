"""Reviewing cases: what ``notify cases`` lists and ``notify case REF`` tells, from the read model.

Everything here is read from the ledger's read model (``ReadModel``); nothing is written. A case's
summary says where it stands (its state, who was told and how it ended, when the next follow-up
is due); its timeline is every record about it in log order, each with the line number and hash
that let anyone check it against the chain head.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ..ledger import CaseState, MessageState, ReadModel
from ..ledger.records import (
    Ack,
    Bounce,
    Entry,
    Fallback,
    Followup,
    FollowupDeferred,
    Intent,
    Outcome,
)

__all__ = [
    "CaseSummary",
    "Chosen",
    "TimelineLine",
    "CaseFilter",
    "summaries",
    "summary",
    "timeline",
    "chosen",
]

STATES = ("acknowledged", "escalated", "delivered", "bounced", "in-doubt", "failed")


@dataclass(frozen=True, slots=True)
class CaseSummary:
    """One line of ``notify cases``."""

    ref: str
    state: str
    ips: tuple[str, ...]
    opened: datetime | None
    last_notice: datetime | None
    next_followup: datetime | None  # None when acknowledged or nothing was delivered
    messages: tuple[tuple[str, str, str], ...]  # (recipient, role, status) in order
    levels: tuple[str, ...]  # follow-up levels reached, in order
    bounces: int
    acked_at: datetime | None = None
    ack_note: str = ""

    def as_dict(self) -> dict[str, Any]:
        def when(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        return {
            "case": self.ref,
            "state": self.state,
            "ips": list(self.ips),
            "opened": when(self.opened),
            "last_notice": when(self.last_notice),
            "next_followup": when(self.next_followup),
            "recipients": [
                {"address": r, "role": role, "status": status} for r, role, status in self.messages
            ],
            "escalated_to": list(self.levels),
            "bounces": self.bounces,
            "acknowledged_at": when(self.acked_at),
            "ack_note": self.ack_note,
        }


@dataclass(frozen=True, slots=True)
class CaseFilter:
    """What ``notify cases`` was asked to show; every given condition must hold."""

    state: str | None = None
    ip: str | None = None
    recipient: str | None = None
    since: datetime | None = None  # a case with any record at or after this moment

    def accepts(self, case: CaseState, state: str) -> bool:
        if self.state and state != self.state:
            return False
        if self.ip and self.ip not in case.ips:
            return False
        if self.recipient and self.recipient.lower() not in {m.recipient for m in case.messages}:
            return False
        if self.since is not None:
            moments = [e.moment for e in case.timeline if e.moment is not None]
            if not moments or max(moments) < self.since:
                return False
        return True


def _status(message: MessageState) -> str:
    return "bounced" if message.bounced else message.status


def summary(case: CaseState, *, after_days: float) -> CaseSummary:
    last = case.last_notice()
    due = None
    if not case.acked and last is not None:
        due = last + timedelta(days=after_days)
    return CaseSummary(
        ref=case.ref,
        state=case.state,
        ips=tuple(case.ips),
        opened=case.opened,
        last_notice=last,
        next_followup=due,
        messages=tuple((m.recipient, m.role, _status(m)) for m in case.messages),
        levels=tuple(level for _, level in case.followups),
        bounces=len(case.bounces),
        acked_at=case.acked_at,
        ack_note=case.ack_note,
    )


def summaries(
    model: ReadModel, *, after_days: float, where: CaseFilter | None = None
) -> list[CaseSummary]:
    """Every case the log holds (oldest first) that ``where`` accepts."""
    where = where or CaseFilter()
    found = []
    for case in model.cases.values():
        state = case.state
        if where.accepts(case, state):
            found.append(summary(case, after_days=after_days))
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(found, key=lambda s: (s.opened or epoch, s.ref))


@dataclass(frozen=True, slots=True)
class TimelineLine:
    """One record about a case: when, what, and the chain coordinates that prove it."""

    seq: int | None
    time: str
    event: str
    text: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "event": self.event,
            "text": self.text,
            "hash": self.hash,
        }


def describe(entry: Entry) -> str:
    """One plain sentence for a record of a case's timeline."""
    if isinstance(entry, Intent):
        count = len(entry.finding_keys)
        return (
            f"message {entry.message_id} to {entry.recipient} ({entry.role}) about {count} "
            f"finding{'s' if count != 1 else ''}, handed to the mail server"
        )
    if isinstance(entry, Outcome):
        reply = f": {entry.smtp_code} {entry.smtp_reply}" if entry.smtp_code else ""
        tries = f" after {entry.attempts} attempts" if entry.attempts > 1 else ""
        return f"{entry.status} to {entry.recipient}{tries}{reply}"
    if isinstance(entry, Fallback):
        return f"the ladder climbed to {entry.to} ({entry.role}): {entry.reason}"
    if isinstance(entry, Followup):
        to = ", ".join(entry.to)
        return f"follow-up to the {entry.level} level ({to}): {entry.reason}"
    if isinstance(entry, FollowupDeferred):
        return f"follow-up to the {entry.level} level held back: {entry.reason}"
    if isinstance(entry, Ack):
        return "acknowledged" + (f": {entry.note}" if entry.note else "")
    if isinstance(entry, Bounce):
        gone = "the contact is gone" if entry.contact_gone else "not final"
        diagnostic = f" ({entry.diagnostic})" if entry.diagnostic else ""
        return (
            f"bounce for {entry.recipient}: {entry.kind or entry.action or 'report'} "
            f"{entry.status or ''}{diagnostic}; {gone}"
        )
    return entry.event


def timeline(case: CaseState) -> list[TimelineLine]:
    return [
        TimelineLine(e.seq, e.time or "", type(e).event, describe(e), e.hash or "")
        for e in case.timeline
    ]


@dataclass(frozen=True, slots=True)
class Chosen:
    """A recipient of the case and why it was chosen (the resolution that named it)."""

    address: str
    role: str
    sources: tuple[str, ...] = ()
    confidence: float | None = None
    provenance: tuple[str, ...] = ()
    ips: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "role": self.role,
            "sources": list(self.sources),
            "confidence": self.confidence,
            "provenance": list(self.provenance),
            "ips": list(self.ips),
        }


def chosen(model: ReadModel, case: CaseState) -> list[Chosen]:
    """Every recipient of the case, with the provenance its resolution recorded."""
    found: dict[str, Chosen] = {}
    for message in case.messages:
        address = message.recipient
        if address in found:
            continue
        why = Chosen(address, message.role)
        ips = []
        for ip in case.ips:
            resolution = model.resolutions.get(ip)
            if resolution is None:
                continue
            for item in [*resolution.recipients, *resolution.fallbacks]:
                if str(item.get("address", "")).lower() != address:
                    continue
                ips.append(ip)
                if why.sources:
                    continue
                confidence = item.get("confidence")
                why = Chosen(
                    address,
                    str(item.get("role") or message.role),
                    tuple(str(s) for s in item.get("sources") or ()),
                    float(confidence) if isinstance(confidence, int | float) else None,
                    tuple(str(p) for p in item.get("provenance") or ()),
                )
        found[address] = Chosen(
            why.address, why.role, why.sources, why.confidence, why.provenance, tuple(ips)
        )
    return list(found.values())
