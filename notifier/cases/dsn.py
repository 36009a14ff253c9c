"""Delivery status notifications (RFC 3464): found in a mailbox, parsed, bounded.

A DSN comes from a stranger's mail server: every part is size-capped, every header cleaned, and a
report that cannot be read is skipped with its reason, never fatal.
"""

from __future__ import annotations

import email
import hashlib
import mailbox
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser, HeaderParser
from email.policy import compat32
from email.utils import getaddresses
from enum import StrEnum
from pathlib import Path
from typing import Any

from ..addresses import clean_address, header_text
from ..errors import ConfigError

__all__ = ["MAX_MESSAGE_BYTES", "Bounce", "BounceKind", "parse_dsn", "read_mailbox"]

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
