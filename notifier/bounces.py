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

The fallback rule is ``Notifier.deliver_ladder``'s, applied after the fact: a case falls back only
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

import email
import hashlib
import mailbox
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesHeaderParser, HeaderParser
from email.policy import compat32
from email.utils import getaddresses, parseaddr
from enum import StrEnum
from pathlib import Path
from typing import Any

from .addresses import clean_address, header_text
from .config import Settings
from .errors import ConfigError
from .escalation import CaseBook, SentMessage
from .ladder import SendOptions, settles
from .models import Delivery, DeliveryStatus
from .pipeline import Notifier, SendResult

__all__ = [
    "MAX_MESSAGE_BYTES",
    "Bounce",
    "BounceAction",
    "BounceKind",
    "BounceOutcome",
    "parse_dsn",
    "process_bounces",
    "read_mailbox",
]

MAX_MESSAGE_BYTES = 5 * 1024 * 1024
"""Messages larger than this are skipped: a DSN returning our message is a few tens of KiB."""

_MAX_RECIPIENTS = 100  # per report: a real DSN about our one-recipient messages names one
_MAX_STATUS_BYTES = 256 * 1024
_MAX_PARTS = 50
_MAX_DEPTH = 4
_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_BASIC_CODE = re.compile(r"(?<!\d)([245])\d\d(?!\d)")
_MESSAGE_ID = re.compile(r"<([^<>\s@]{1,500}@[^<>\s@]{1,500})>")
_TAG = re.compile(r"[A-Za-z0-9._=-]{1,64}")
_REPORT_TYPES = ("message/delivery-status", "message/global-delivery-status")
_RETURNED_MESSAGE = ("message/rfc822", "message/global")
_RETURNED_HEADERS = ("text/rfc822-headers", "message/global-headers")
# where MTAs and delivery agents leave the address a report was delivered to, most reliable first
_ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")


class BounceKind(StrEnum):
    PERMANENT = "permanent"  # failed, 5.x.x (not 5.2.2): the mailbox is gone
    TRANSIENT = "transient"  # failed but temporary by nature: 4.x.x, 5.2.2 mailbox full
    DELAYED = "delayed"  # still being retried
    DELIVERED = "delivered"  # delivered, relayed or expanded: not a failure


@dataclass(frozen=True, slots=True)
class Bounce:
    """One recipient's entry in a delivery status notification, cleaned and bounded."""

    recipient: str  # Final-Recipient ("" when the report omits it)
    action: str  # failed / delayed / delivered / relayed / expanded
    status: str  # RFC 3463 code such as "5.1.1" ("" when none can be found)
    diagnostic: str = ""  # Diagnostic-Code, e.g. "smtp; 550 5.1.1 User unknown"
    original_recipient: str = ""
    remote_mta: str = ""
    reporting_mta: str = ""
    envelope_id: str = ""  # Original-Envelope-Id
    message_id: str = ""  # Message-ID of the returned message, with angle brackets
    dsn_id: str = ""  # the report's own Message-ID, or "sha256:<digest>" of its bytes
    verp_address: str = ""  # the "local+tag@domain" address the report was delivered to
    verp_id: str = ""  # the tag of that address

    @property
    def kind(self) -> BounceKind:
        action = self.action
        if action in ("delivered", "relayed", "expanded"):
            return BounceKind.DELIVERED
        if action == "delayed":
            return BounceKind.DELAYED
        if action != "failed":
            # Action is mandatory; without one, the status class is all there is to go on
            if self.status.startswith("2"):
                return BounceKind.DELIVERED
            if not self.status.startswith("5"):
                return BounceKind.DELAYED
        if self.status.startswith("5") and self.status != "5.2.2":
            return BounceKind.PERMANENT
        return BounceKind.TRANSIENT


# --------------------------------------------------------------------------- parsing


def _header(value: object, limit: int = 500) -> str:
    return header_text(value, limit) if value is not None else ""


def _typed_address(value: str) -> str:
    """``rfc822; Abuse@Example.NET`` → ``abuse@example.net`` (lower-cased for comparison)."""
    _kind, sep, rest = value.partition(";")
    text = (rest if sep else value).strip()
    cleaned = clean_address(text)
    return (cleaned or header_text(text, 254)).lower()


def _mta(value: str) -> str:
    _kind, sep, rest = value.partition(";")
    return header_text(rest if sep else value, 255).strip()


def _status(status: str, diagnostic: str) -> str:
    for text in (status, diagnostic):
        match = _STATUS.search(text)
        if match:
            return ".".join(str(int(group)) for group in match.groups())
    match = _BASIC_CODE.search(diagnostic)
    return f"{match.group(1)}.0.0" if match else ""


def _children(part: Message, limit: int = _MAX_PARTS) -> list[Message]:
    payload = part.get_payload()
    if not isinstance(payload, list):
        return []
    return [p for p in payload[:limit] if isinstance(p, Message)]


def _find_report(message: Message, depth: int = 0) -> Message | None:
    """The ``multipart/report; report-type=delivery-status`` part, if any (not inside message/*)."""
    if message.get_content_type() == "multipart/report":
        kind = str(message.get_param("report-type", "") or "").lower()
        if kind in ("delivery-status", "global-delivery-status"):
            return message
        return None
    if depth >= _MAX_DEPTH or message.get_content_maintype() != "multipart":
        return None
    # some gateways wrap the report in multipart/mixed; a returned message/rfc822 is not searched
    for child in _children(message):
        found = _find_report(child, depth + 1)
        if found is not None:
            return found
    return None


def _raw_payload(part: Message) -> bytes:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload[:_MAX_STATUS_BYTES]
    text = part.get_payload()
    return text.encode("utf-8", "replace")[:_MAX_STATUS_BYTES] if isinstance(text, str) else b""


def _status_text(part: Message) -> str:
    children = _children(part, 1)
    if children:
        # the parser takes message/global-delivery-status for an encapsulated message: its
        # "headers" are the per-message block and its body the recipient blocks
        try:
            text = children[0].as_string()
        except (ValueError, LookupError, TypeError):
            text = ""
    else:
        text = _raw_payload(part).decode("utf-8", "replace")
    return text[:_MAX_STATUS_BYTES].replace("\r\n", "\n")


def _status_blocks(part: Message) -> list[dict[str, str]]:
    """The header blocks of a delivery-status part: per-message first, then per-recipient."""
    if part.get_content_type() == "message/delivery-status":
        children = _children(part, _MAX_RECIPIENTS + 1)
        if children:
            blocks = [{str(k).lower(): _header(v) for k, v in c.items()} for c in children]
            return [b for b in blocks if b]
    blocks = []
    parser = HeaderParser(policy=compat32)
    for chunk in re.split(r"\n[ \t]*\n", _status_text(part))[: _MAX_RECIPIENTS + 1]:
        if chunk.strip():
            headers = parser.parsestr(chunk.strip("\n") + "\n", headersonly=True)
            block = {str(k).lower(): _header(v) for k, v in headers.items()}
            if block:
                blocks.append(block)
    return blocks


def _message_id(value: object) -> str:
    match = _MESSAGE_ID.search(str(value)) if value is not None else None
    return f"<{match.group(1)}>" if match else ""


def _returned_message_id(parts: list[Message]) -> str:
    for part in parts:
        kind = part.get_content_type()
        if kind in _RETURNED_MESSAGE:
            inner = _children(part)
            if inner:
                found = _message_id(inner[0].get("Message-ID"))
                if found:
                    return found
            headers = BytesHeaderParser(policy=compat32).parsebytes(_raw_payload(part))
            found = _message_id(headers.get("Message-ID"))
            if found:
                return found
        elif kind in _RETURNED_HEADERS:
            headers = BytesHeaderParser(policy=compat32).parsebytes(_raw_payload(part))
            found = _message_id(headers.get("Message-ID"))
            if found:
                return found
    return ""


def _report_id(message: Message) -> str:
    found = _message_id(message.get("Message-ID"))
    if found:
        return found
    try:
        raw = message.as_bytes()
    except (ValueError, TypeError, LookupError):
        raw = repr(message.items()).encode("utf-8", "replace")
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _verp(message: Message) -> tuple[str, str]:
    """The first ``local+tag@domain`` address the report was delivered to, and its tag."""
    for name in _ENVELOPE_HEADERS:
        values = [_header(v, 998) for v in (message.get_all(name) or [])[:20]]
        for _display, address in getaddresses(values):
            cleaned = clean_address(address)
            if cleaned is None:
                continue
            local = cleaned.rpartition("@")[0]
            if "+" in local:
                tag = local.rpartition("+")[2]
                if _TAG.fullmatch(tag):
                    return cleaned.lower(), tag.lower()
    return "", ""


def parse_dsn(message: Message) -> list[Bounce]:
    """One ``Bounce`` per recipient of an RFC 3464 delivery status notification.

    Anything that is not a ``multipart/report; report-type=delivery-status`` (an auto-reply,
    a human answer, a plain-text bounce) gives ``[]``. Never raises for malformed input.
    """
    report = _find_report(message)
    if report is None:
        return []
    parts = _children(report)
    status_part = next((p for p in parts if p.get_content_type() in _REPORT_TYPES), None)
    if status_part is None:
        return []
    blocks = _status_blocks(status_part)
    if not blocks:
        return []
    # Reporting-MTA opens the per-message block; a report that skipped it starts with recipients
    if "final-recipient" in blocks[0] or "original-recipient" in blocks[0]:
        per_message: dict[str, str] = {}
        per_recipient = blocks
    else:
        per_message, per_recipient = blocks[0], blocks[1:]
    common: dict[str, Any] = {
        "reporting_mta": _mta(per_message.get("reporting-mta", "")),
        "envelope_id": header_text(per_message.get("original-envelope-id", ""), 100),
        "message_id": _returned_message_id(parts),
        "dsn_id": _report_id(message),
    }
    common["verp_address"], common["verp_id"] = _verp(message)
    bounces = []
    for block in per_recipient[:_MAX_RECIPIENTS]:
        final = _typed_address(block.get("final-recipient", ""))
        original = _typed_address(block.get("original-recipient", ""))
        if not final and not original:
            continue
        diagnostic = header_text(block.get("diagnostic-code", ""), 500)
        bounces.append(
            Bounce(
                recipient=final or original,
                action=header_text(block.get("action", ""), 20).lower(),
                status=_status(block.get("status", ""), diagnostic),
                diagnostic=diagnostic,
                original_recipient=original,
                remote_mta=_mta(block.get("remote-mta", "")),
                **common,
            )
        )
    return bounces


# --------------------------------------------------------------------------- mailboxes


def _open(path: Path) -> mailbox.Mailbox[Any]:
    try:
        if path.is_dir():
            if (path / "cur").is_dir() and (path / "new").is_dir():
                return mailbox.Maildir(path, factory=None, create=False)
            raise ConfigError(f"{path} is a folder but not a Maildir (no cur/ and new/ in it)")
        if path.is_file():
            with path.open("rb") as handle:
                start = handle.read(5)
            # an empty file is an mbox with nothing in it yet
            if start and start != b"From ":
                raise ConfigError(f"{path} is not an mbox file (it does not start with 'From ')")
            return mailbox.mbox(path, factory=None, create=False)
    except OSError as exc:
        raise ConfigError(f"cannot read mailbox {path}: {exc.strerror or exc}") from None
    raise ConfigError(f"no such mailbox: {path}")


def read_mailbox(
    path: str | Path,
    *,
    max_bytes: int = MAX_MESSAGE_BYTES,
    on_skip: Callable[[str, str], None] | None = None,
) -> Iterator[Message]:
    """Every message in the Maildir folder or mbox file at ``path``, oldest first.

    The mailbox is only read, never changed (no flags set, nothing moved). Messages larger than
    ``max_bytes`` or unreadable are skipped and reported to ``on_skip(key, reason)``. A path that
    is not a mailbox raises ``ConfigError`` at once, before iteration.
    """
    box = _open(Path(path))
    try:
        keys = list(box.iterkeys())
    except (OSError, mailbox.Error) as exc:
        box.close()
        raise ConfigError(f"cannot read mailbox {path}: {exc}") from None
    return _messages(box, keys, max_bytes, on_skip)


def _messages(
    box: mailbox.Mailbox[Any],
    keys: list[str],
    max_bytes: int,
    on_skip: Callable[[str, str], None] | None,
) -> Iterator[Message]:
    try:
        for key in keys:
            try:
                with box.get_file(key) as handle:
                    data = handle.read(max_bytes + 1)
            except (OSError, KeyError):
                if on_skip is not None:
                    on_skip(str(key), "unreadable (removed while reading?)")
                continue
            if len(data) > max_bytes:
                if on_skip is not None:
                    on_skip(str(key), f"larger than {max_bytes} bytes")
                continue
            yield email.message_from_bytes(data, policy=compat32)
    finally:
        box.close()


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
    book: CaseBook, bounce: Bounce, verp: Callable[[str], str | None] | None
) -> tuple[SentMessage | None, str]:
    if bounce.message_id:
        sent = book.message(bounce.message_id)
        if sent is not None:
            return sent, "message-id"
    if verp is not None and bounce.verp_address:
        identifier = verp(bounce.verp_address)
        sent = book.by_verp(identifier) if identifier else None
        if sent is not None:
            return sent, "verp"
    if bounce.envelope_id:
        sent = book.attempt(bounce.envelope_id)
        if sent is not None:
            return sent, "envelope-id"
    return None, ""


def _kept_reason(bounce: Bounce, sent: SentMessage, ours: bool) -> str:
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
    book = CaseBook.from_log(notifier.audit)
    verp = _verp_matcher(notifier.settings)
    seen = set(book.dsn_ids)
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
            actions.append(await _process(notifier, book, bounce, verp, dry_run))
    return actions


async def _process(
    notifier: Notifier,
    book: CaseBook,
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
    sent, matched_by = _match(book, bounce, verp)
    if sent is None:
        action.reason = "not about any message in the audit log"
        return action
    ours = sent.recipient.lower()
    # an alias or forward behind the contact may fail alone; only our own address is decisive
    about_us = not bounce.recipient or ours in (bounce.recipient, bounce.original_recipient)
    gone = bounce.kind == BounceKind.PERMANENT and about_us and not sent.test
    action.recipient = sent.recipient
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
            recipient=sent.recipient,
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
    case = book.case(sent.case)
    if case is None:
        action.reason = "permanent failure recorded"
        return action
    standing = [m.recipient for m in case.messages if m.reached]
    if standing:
        others = ", ".join(dict.fromkeys(standing))
        action.reason = f"permanent failure; the case still reached {others}"
        return action
    tried = case.attempted()
    ladder = [c for c in book.fallbacks(case) if c.address.lower() not in tried]
    if not ladder:
        action.outcome = BounceOutcome.EXHAUSTED
        action.reason = "every contact of the case failed and no fallback is left"
        return action
    findings = list(case.findings.values())
    if not findings:
        action.outcome = BounceOutcome.FALLBACK_FAILED
        action.reason = "the audit log does not hold this case's findings"
        return action
    result = SendResult(book.resolution(case))
    network = book.network(case)
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
            book.findings_for(case, contact),
            network,
            result,
            SendOptions(dry_run=dry_run, case_ref=case.ref),
        )
        book.note_delivery(case, contact, delivery)
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
