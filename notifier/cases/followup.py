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

The ledger's read model (``ReadModel``) is the read side this module and ``cases.bounces`` use:
one pass over the log gives every case, its messages, their fate and the contacts the
resolutions offered; this run's own sends are noted in it as they happen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from ..addresses import header_text
from ..compose import ComposedMessage
from ..config import Settings
from ..errors import ConfigError
from ..ladder import SendOptions
from ..ledger import CaseState, Clock, Ledger, ReadModel, Record, normalise_case, open_ledger
from ..ledger.rebuild import LEVELS
from ..models import (
    Delivery,
    DeliveryStatus,
)
from ..pipeline import Notifier, SendResult
from ..sources import utcnow

_NOTE_LIMIT = 1000

__all__ = [
    "FollowupAction",
    "FollowupStatus",
    "ack",
    "followup",
]

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
    case = log.view().refresh().case(wanted)  # the ledger's read model
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


_REACHED = frozenset(
    {
        DeliveryStatus.DELIVERED,
        DeliveryStatus.ALREADY_SENT,
        DeliveryStatus.IN_DOUBT,
        DeliveryStatus.IN_FLIGHT,
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
    model = notifier.audit.view().refresh()  # a model of its own: this run notes its sends
    reason = f"no acknowledgement {_days(after)} days after the last notice"
    actions: list[FollowupAction] = []
    for case in model.due(now=now, after_days=after):
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
        actions.append(await _escalate(notifier, model, case, last, reason, dry_run))
    return actions


async def _escalate(
    notifier: Notifier,
    model: ReadModel,
    case: CaseState,
    last: datetime,
    reason: str,
    dry_run: bool,
) -> FollowupAction:
    ips = tuple(case.ips)
    reached = case.levels_reached()
    top = max((LEVELS.index(level) for level in reached), default=-1)
    dead = case.dead()
    rungs = [
        (level, [c for c in model.contacts_at(case, level) if c.address.lower() not in dead])
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
    findings = list(case.rebuilt.values())
    thread = case.thread()
    if not findings or not thread:
        return FollowupAction(
            case.ref,
            ips,
            FollowupStatus.UNREADABLE,
            last,
            reason="the audit log does not hold this case's findings or messages",
        )
    network = model.network(case)
    result = SendResult(model.resolution(case))
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
            mine = model.findings_for(case, contact)
            delivery = await notifier.deliver(contact, mine, network, result, options)
            model.note_delivery(case, contact, delivery)
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
