"""Torn last lines: bytes a crash cut short are moved aside and recorded, never dropped."""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING

from ..errors import AuditError
from .chain import Record
from .fileio import Tail, TornTail, fsync_dir, read_tail

__all__ = ["record_orphans", "move_torn"]

if TYPE_CHECKING:
    from .files import AuditLog


def record_orphans(log: AuditLog, fd: int, tail: Tail) -> bool:
    asides = sorted(log.state_dir.glob(f"{log.path.name}.torn-*"))
    if not asides:
        return False
    named = {r.get("file") for r in log.records() if r.get("event") == "torn-tail"}
    orphans = [p for p in asides if p.name not in named]
    if not orphans:
        return False
    items: list[tuple[str, Record]] = []
    for aside in orphans:
        data = aside.read_bytes()
        items.append(
            (
                "torn-tail",
                {
                    "length": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "file": aside.name,
                    "offset": None,
                    "note": "moved aside by a run that stopped before recording it",
                },
            )
        )
    log._write_records(fd, tail, items)
    return True


def move_torn(log: AuditLog, fd: int, torn: TornTail) -> Record:
    """Copy the torn bytes to ``audit.jsonl.torn-<n>``, cut them, log a ``torn-tail`` record."""
    number = 1 + max(
        (
            int(p.name.rsplit("-", 1)[1])
            for p in log.state_dir.glob(f"{log.path.name}.torn-*")
            if p.name.rsplit("-", 1)[1].isdigit()
        ),
        default=0,
    )
    aside = log.path.with_name(f"{log.path.name}.torn-{number}")
    digest = hashlib.sha256()
    try:
        out = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            offset = torn.offset
            end = torn.offset + torn.length
            while offset < end:
                block = os.pread(fd, min(1 << 20, end - offset), offset)
                if not block:
                    break
                digest.update(block)
                view = memoryview(block)
                while view:
                    view = view[os.write(out, view) :]
                offset += len(block)
            os.fsync(out)
        finally:
            os.close(out)
        fsync_dir(log.state_dir)
        os.ftruncate(fd, torn.offset)
        os.fsync(fd)
    except OSError as exc:
        raise AuditError(f"cannot move the torn last line aside: {exc.strerror}") from None
    tail = read_tail(fd)
    record = log._write_record(
        fd,
        tail,
        "torn-tail",
        {
            "length": torn.length,
            "sha256": digest.hexdigest(),
            "file": aside.name,
            "offset": torn.offset,
        },
    )
    log.torn_tail = None
    return record
