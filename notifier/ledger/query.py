"""Selecting and exporting records (``notify log show``/``export``)."""

from __future__ import annotations

import csv
import ipaddress
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Literal, TextIO

from .chain import Record, canonical, strings

_CSV_COLUMNS = (
    "seq",
    "time",
    "event",
    "ip",
    "recipient",
    "message_id",
    "attempt_id",
    "status",
    "smtp_code",
    "smtp_reply",
    "digest",
)

__all__ = ["find", "select", "export"]
_CSV_SKIP = frozenset({*_CSV_COLUMNS, "prev", "hash"})


def _normal_ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return text.strip().lower()


def _at_or_after(stamp: object, since: datetime) -> bool:
    if not isinstance(stamp, str):
        return False
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return False
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment >= since


def _cell(value: object) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def find(records: Iterable[Record], message_id: str) -> list[Record]:
    """Every record about the message with this Message-ID (angle brackets optional)."""
    wanted = message_id.strip().strip("<>")
    return [
        record
        for record in records
        if wanted in {m.strip("<>") for m in strings(record.get("message_id"), None)}
    ]


def select(
    records: Iterable[Record],
    ip: str | None = None,
    recipient: str | None = None,
    since: datetime | None = None,
    status: str | None = None,
    event: str | None = None,
) -> Iterator[Record]:
    """Records matching every given filter (``ip`` also matches a batch's ``ips``).

    ``since`` without a timezone is taken as UTC.
    """
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    wanted_ip = _normal_ip(ip) if ip is not None else None
    wanted_rcpt = recipient.strip().lower() if recipient is not None else None
    for record in records:
        if event is not None and record.get("event") != event:
            continue
        if status is not None and record.get("status") != status:
            continue
        if wanted_ip is not None and wanted_ip not in {
            _normal_ip(v) for v in strings(record.get("ip"), record.get("ips"))
        }:
            continue
        if wanted_rcpt is not None and wanted_rcpt not in {
            v.lower() for v in strings(record.get("recipient"), record.get("recipients"))
        }:
            continue
        if since is not None and not _at_or_after(record.get("time"), since):
            continue
        yield record


def export(chosen: Iterable[Record], fmt: Literal["csv", "json"], out: TextIO) -> int:
    """Write records to ``out`` as CSV or a JSON array; return how many.

    CSV has one column per common field and ``details`` (JSON) for the rest. Cells that a
    spreadsheet would run as a formula (hostile SMTP replies can start with ``=``) are
    prefixed with a quote.
    """
    count = 0
    if fmt == "json":
        out.write("[")
        for record in chosen:
            out.write(",\n" if count else "\n")
            out.write(json.dumps(record, ensure_ascii=False, sort_keys=True))
            count += 1
        out.write("\n]\n" if count else "]\n")
        return count
    if fmt != "csv":
        raise ValueError(f"unknown export format: {fmt!r}")
    writer = csv.writer(out)
    writer.writerow([*_CSV_COLUMNS, "details", "prev", "hash"])
    for record in chosen:
        rest = {k: v for k, v in record.items() if k not in _CSV_SKIP}
        row = [_cell(record.get(name)) for name in _CSV_COLUMNS]
        row.append(_cell(canonical(rest)) if rest else "")
        row += [record.get("prev", ""), record.get("hash", "")]
        writer.writerow(row)
        count += 1
    return count
