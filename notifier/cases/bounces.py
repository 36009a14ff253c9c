"""Bounces: read delivery status notifications, record them, and fall back when a contact is gone.

Three layers, as everywhere in notifier: ``parse_dsn`` is pure (an RFC 3464 report in, one
``Bounce`` per recipient out), ``read_mailbox`` reads a Maildir folder or an mbox file without
changing it, and ``process_bounces`` ties the two to the audit log and the send path.

Matching a report to what we sent, most specific first: the Message-ID of the returned message
(the ``message/rfc822`` or ``text/rfc822-headers`` part), then the VERP id in the address the
report was delivered to (``smtp.envelope_from = "bounce+{id}@domain"``), then the report's
``Original-Envelope-Id`` taken as an attempt id. A report matching nothing we sent is backscatter
or someone else's mail: it is reported, never recorded.

What a bounce means (RFC 3463 status codes):

* ``failed`` with a 5.x.x status: the contact is gone, except 5.2.2 (mailbox full), which is
  temporary by nature whatever class the server gave it;
* ``failed`` with 4.x.x, and ``delayed``: recorded only; the message may still arrive;
* ``delivered``, ``relayed``, ``expanded``: not a failure, ignored.

A permanent failure reported for another address than ours (an alias or forward behind the
contact failed) is recorded, but the contact itself stands.

The fallback rule is ``notifier.ladder``'s, applied after the fact: a case falls back only
when *every* contact it was sent to has now failed (refused at send time or bounced permanently;
a message still in doubt counts as reaching). It then goes to the resolution's fallbacks
(registrar, national CERT) not yet tried for the case, in order, stopping at the first that
accepts; addresses on the suppression list are not tried. While any other contact of the case
still stands, the bounce is recorded and nothing is sent. When a sending limit (daily or per-run
cap) refuses the fallback, the report stays processed and ``followup`` climbs the ladder for the
case once it is due.

Each report is processed once: its Message-ID (or the digest of its bytes when it has none) is
kept in the ``bounce`` records, and a report seen again is skipped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parseaddr
from enum import StrEnum
from pathlib import Path

from ..config import Settings
from ..ladder import SendOptions, settles
from ..ledger import MessageState, ReadModel
from ..models import Delivery, DeliveryStatus
from ..pipeline import Notifier, SendResult
from .dsn import MAX_MESSAGE_BYTES, Bounce, BounceKind, parse_dsn, read_mailbox

__all__ = ["BounceAction", "BounceOutcome", "process_bounces"]

# --------------------------------------------------------------------------- processing


class BounceOutcome(StrEnum):
    RECORDED = "recorded"  # written to the log; nothing else to do
    FALLBACK = "fallback"  # every contact of the case failed: a fallback accepted the report
    FALLBACK_FAILED = "fallback-failed"  # ... and every fallback failed too
    EXHAUSTED = "exhausted"  # every contact failed and no fallback is left to try
    DEFERRED = "deferred"  # a sending limit refused the fallback; follow-ups escalate later
    UNMATCHED = "unmatched"  # not about anything we sent: not recorded
    DUPLICATE = "duplicate"  # this report was processed in an earlier run
    IGNORED = "ignored"  # a success notice (delivered/relayed/expanded)
    SKIPPED = "skipped"  # a mailbox message that could not be read or was too large


@dataclass(slots=True)
class BounceAction:
    """What ``process_bounces`` did about one recipient of one report."""

    outcome: BounceOutcome
    dsn_id: str = ""
    recipient: str = ""  # our recipient the report is about (the DSN's own one when unmatched)
    status: str = ""
    kind: BounceKind | None = None
    message_id: str = ""
    case: str = ""
    matched_by: str = ""  # message-id / verp / envelope-id
    reason: str = ""
    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """The case has now nobody left who got the report."""
        return self.outcome in (BounceOutcome.FALLBACK_FAILED, BounceOutcome.EXHAUSTED)


def _verp_matcher(settings: Settings) -> Callable[[str], str | None] | None:
    """Maps an address to its VERP id when it has the configured return path's shape."""
    template = settings.smtp.envelope_from
    if "{id}" not in template:
        return None
    address = (parseaddr(template)[1] or template).lower()
    if "{id}" not in address:
        return None
    prefix, _, suffix = address.partition("{id}")

    def match(candidate: str) -> str | None:
        text = candidate.lower()
        if len(text) < len(prefix) + len(suffix):
            return None
        if not (text.startswith(prefix) and text.endswith(suffix)):
            return None
        core = text[len(prefix) : len(text) - len(suffix)]
        return core if re.fullmatch(r"[0-9a-f]{12}", core) else None

    return match


def _match(
    model: ReadModel, bounce: Bounce, verp: Callable[[str], str | None] | None
) -> tuple[MessageState | None, str]:
    if bounce.message_id:
        sent = model.message(bounce.message_id)
        if sent is not None:
            return sent, "message-id"
    if verp is not None and bounce.verp_address:
        identifier = verp(bounce.verp_address)
        sent = model.by_verp(identifier) if identifier else None
        if sent is not None:
            return sent, "verp"
    if bounce.envelope_id:
        sent = model.attempt(bounce.envelope_id)
        if sent is not None:
            return sent, "envelope-id"
    return None, ""


def _kept_reason(bounce: Bounce, sent: MessageState, ours: bool) -> str:
    kind = bounce.kind
    if kind == BounceKind.DELAYED:
        return "delayed: the receiving side is still trying"
    if kind == BounceKind.TRANSIENT:
        if bounce.status == "5.2.2":
            return "mailbox full (5.2.2): temporary, the contact stands"
        return f"temporary failure ({bounce.status or 'no status'}): the contact stands"
    if sent.test:
        return "a rehearsal message (--test-recipient): no fallback"
    if not ours:
        return f"another address behind the contact failed ({bounce.recipient})"
    return ""


async def process_bounces(
    notifier: Notifier,
    path: str | Path,
    *,
    dry_run: bool = False,
    max_bytes: int = MAX_MESSAGE_BYTES,
) -> list[BounceAction]:
    """Read the DSNs in the mailbox at ``path``, record them and fall back where a case is dead.

    Returns one action per recipient of each report (plus one per skipped mailbox message).
    With ``dry_run`` nothing is recorded or sent; fallbacks are rendered only. Raises
    ``ConfigError`` when ``path`` is not a mailbox.
    """
    actions: list[BounceAction] = []

    def skipped(key: str, why: str) -> None:
        actions.append(BounceAction(BounceOutcome.SKIPPED, reason=f"message {key}: {why}"))

    messages = read_mailbox(path, max_bytes=max_bytes, on_skip=skipped)
    model = notifier.audit.view().refresh()  # a model of its own: this run notes its sends
    verp = _verp_matcher(notifier.settings)
    seen = set(model.dsn_ids)
    for message in messages:
        bounces = parse_dsn(message)
        if not bounces:
            continue
        dsn_id = bounces[0].dsn_id
        if dsn_id in seen:
            actions += [
                BounceAction(
                    BounceOutcome.DUPLICATE,
                    dsn_id=dsn_id,
                    recipient=b.recipient,
                    status=b.status,
                    kind=b.kind,
                    reason="this report was already processed",
                )
                for b in bounces
            ]
            continue
        seen.add(dsn_id)
        for bounce in bounces:
            actions.append(await _process(notifier, model, bounce, verp, dry_run))
    return actions


async def _process(
    notifier: Notifier,
    model: ReadModel,
    bounce: Bounce,
    verp: Callable[[str], str | None] | None,
    dry_run: bool,
) -> BounceAction:
    action = BounceAction(
        BounceOutcome.UNMATCHED,
        dsn_id=bounce.dsn_id,
        recipient=bounce.recipient,
        status=bounce.status,
        kind=bounce.kind,
        message_id=bounce.message_id,
    )
    if bounce.kind == BounceKind.DELIVERED:
        action.outcome = BounceOutcome.IGNORED
        action.reason = f"a success notice ({bounce.action})"
        return action
    sent, matched_by = _match(model, bounce, verp)
    if sent is None:
        action.reason = "not about any message in the audit log"
        return action
    ours = sent.recipient
    # an alias or forward behind the contact may fail alone; only our own address is decisive
    about_us = not bounce.recipient or ours in (bounce.recipient, bounce.original_recipient)
    gone = bounce.kind == BounceKind.PERMANENT and about_us and not sent.test
    action.recipient = sent.address
    action.message_id = f"<{sent.message_id}>"
    action.case = sent.case
    action.matched_by = matched_by
    action.outcome = BounceOutcome.RECORDED
    if not dry_run:
        notifier.audit.append(
            "bounce",
            dsn_id=bounce.dsn_id,
            message_id=action.message_id,
            attempt_id=sent.attempt_id,
            ip=sent.ip,
            case=sent.case,
            recipient=sent.address,
            final_recipient=bounce.recipient,
            action=bounce.action,
            status=bounce.status,
            kind=str(bounce.kind),
            diagnostic=bounce.diagnostic,
            reporting_mta=bounce.reporting_mta,
            remote_mta=bounce.remote_mta,
            matched_by=matched_by,
            contact_gone=gone,
        )
    if not gone:
        action.reason = _kept_reason(bounce, sent, about_us)
        return action
    sent.bounced = True
    case = model.case(sent.case)
    if case is None:
        action.reason = "permanent failure recorded"
        return action
    standing = [m.address for m in case.messages if m.standing]
    if standing:
        others = ", ".join(dict.fromkeys(standing))
        action.reason = f"permanent failure; the case still reached {others}"
        return action
    tried = case.attempted()
    ladder = [c for c in model.fallbacks(case) if c.address.lower() not in tried]
    if not ladder:
        action.outcome = BounceOutcome.EXHAUSTED
        action.reason = "every contact of the case failed and no fallback is left"
        return action
    if not case.rebuilt:
        action.outcome = BounceOutcome.FALLBACK_FAILED
        action.reason = "the audit log does not hold this case's findings"
        return action
    result = SendResult(model.resolution(case))
    network = model.network(case)
    action.outcome = BounceOutcome.FALLBACK_FAILED
    action.reason = "every contact and every fallback failed"
    for contact in ladder:
        if not dry_run:
            notifier.audit.append(
                "fallback",
                ip=case.ips[0] if case.ips else "",
                ips=list(case.ips),
                case=case.ref,
                to=contact.address,
                role=str(contact.role),
                reason="every contact bounced",
                dsn_id=bounce.dsn_id,
            )
        # each fallback (a national CERT, say) is told only about the addresses it answers for
        delivery = await notifier.deliver(
            contact,
            model.findings_for(case, contact),
            network,
            result,
            SendOptions(dry_run=dry_run, case_ref=case.ref),
        )
        model.note_delivery(case, contact, delivery)
        if delivery.status == DeliveryStatus.HELD_BACK:
            action.outcome = BounceOutcome.DEFERRED
            action.reason = (
                f"a sending limit refused the fallback to {contact.address}; "
                "followup escalates the case once it is due"
            )
            break
        if settles(delivery.status):
            action.outcome = BounceOutcome.FALLBACK
            action.reason = f"every contact failed: the report went to {contact.address}"
            break
    action.deliveries = list(result.deliveries)
    return action
