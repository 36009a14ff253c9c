"""The file store: ``<state.dir>/audit.jsonl`` and the folders beside it.

Files under the state directory::

    audit.jsonl                    one JSON record a line, each carrying the hash of the line before
    audit.jsonl.lock               sidecar lock: one writer at a time, across processes
    audit.jsonl.torn-<n>           the bytes of a line a crash cut short, moved aside, never dropped
    messages/<sha256>.eml          the exact bytes of every message handed to a mail server
    timestamps/<N>-<hash16>.tsr    RFC 3161 replies over the chain head ``N:HASH``
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric import ed25519

from ..errors import AuditError
from .base import Guard, Ledger
from .chain import HEX64, LOG_NAME, Clock, Record
from .evidence import FileArtifacts
from .filechain import (
    Counted,
    Written,
    append_lines,
    count_head,
    detect_torn,
    locked,
    next_link,
    read_records,
    sync_log,
    write_head_mark,
)
from .fileio import (
    Tail,
    TornTail,
    atomic_write,
    atomic_write_all,
    file_sha256,
    make_dir,
    read_tail,
)
from .keys import load_signing_key
from .torn import move_torn, record_orphans
from .workers import FileWorkers

__all__ = ["AuditLog"]

if TYPE_CHECKING:
    from ..config import Settings


class AuditLog(Ledger):
    """The one writer of ``<state.dir>/audit.jsonl``; also the reader the CLI and pipeline use.

    ``append`` takes a cross-process lock, re-reads the last line's hash from disk, and writes the
    new line in a single ``write`` on an ``O_APPEND`` descriptor followed by ``fsync``. The
    pipeline writes an ``intent`` before SMTP DATA and the ``outcome`` after it, so a crash
    between the two leaves an intent without outcome (see :meth:`in_doubt`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock,
        signer: ed25519.Ed25519PrivateKey | None = None,
    ) -> None:
        super().__init__(clock=clock, signer=signer)
        self.path = Path(path)
        self.state_dir = self.path.parent
        self.messages_dir = self.state_dir / "messages"
        self.timestamps_dir = self.state_dir / "timestamps"
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        # the head after the last append: a log cut shorter than it no longer verifies
        self.head_path = self.path.with_name(self.path.name + ".head")
        self.workers = FileWorkers(self.state_dir / "workers")
        self.worker = self.workers.worker
        self.torn_tail: TornTail | None = detect_torn(self.path)
        self._orphans_checked = False
        # (inode, offset, complete lines before it): where ``head`` stopped counting last time
        self._counted: Counted | None = None
        self._written = Written()  # what ``follow`` takes without parsing it again

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock) -> AuditLog:
        """The log under ``state.dir``; outcomes are signed when ``audit.signing_key`` is set."""
        key_file = settings.audit.signing_key
        signer = load_signing_key(key_file) if key_file else None
        return cls(settings.state_dir / LOG_NAME, clock=clock, signer=signer)

    # ---------------------------------------------------------------- writing

    def _append_guarded(
        self, items: list[tuple[str, Record]], guards: list[Guard | None]
    ) -> list[Record | None]:
        """Write the items whose guard (called in order, under the lock) says yes; None for the
        others. A guard sees the log as it is on disk, with no other writer able to add to it."""
        if not items:
            return []
        return self._append_taken(lambda: (items, guards))

    def _append_taken(
        self, take: Callable[[], tuple[list[tuple[str, Record]], list[Guard | None]]]
    ) -> list[Record | None]:
        """The items are taken once the lock is held: while this process waited for another
        to finish writing, more of its own records came to join the group. They are flushed
        to disk once the lock is let go (a flush under load takes milliseconds the other
        writers need not wait for), and returned only then: nothing is done on the strength
        of a record before it is on disk."""
        with locked(self.path, self._lock_path) as fd:
            items, guards = take()
            if not items:
                return []
            tail = self._repair(fd)
            keep = [guard is None or guard() for guard in guards]
            chosen = [item for item, kept in zip(items, keep, strict=True) if kept]
            if not chosen:
                return [None] * len(keep)
            written = iter(self._write_records(fd, tail, chosen, sync=False))
            found = [next(written) if kept else None for kept in keep]
            flushing = os.dup(fd)
        try:
            sync_log(flushing)
        finally:
            os.close(flushing)
        return found

    def recover(self) -> Record | None:
        """Move a torn last line aside now; return the ``torn-tail`` record, or None if intact."""
        with locked(self.path, self._lock_path) as fd:
            tail = read_tail(fd)
            if tail.torn is None:
                self.torn_tail = None
                return None
            return move_torn(self, fd, tail.torn)

    def store_message(self, raw: bytes) -> str:
        """Keep the exact bytes of a message as ``messages/<sha256>.eml``; return the digest."""
        return self.store_messages([raw])[0]

    def store_messages(self, raws: Sequence[bytes]) -> list[str]:
        """Several at once: written, then synced, then renamed, the folder synced once."""
        digests = [hashlib.sha256(raw).hexdigest() for raw in raws]
        try:
            make_dir(self.state_dir)
            make_dir(self.messages_dir)
            files: dict[Path, bytes] = {}
            for digest, raw in zip(digests, raws, strict=True):
                target = self.messages_dir / f"{digest}.eml"
                if not (target.is_file() and file_sha256(target) == digest):
                    files[target] = raw
            atomic_write_all(files.items())
        except OSError as exc:
            which = f"message {digests[0]}" if len(digests) == 1 else f"{len(digests)} messages"
            raise AuditError(f"cannot store {which}: {exc.strerror or exc}") from None
        return digests

    def load_message(self, digest: str) -> bytes:
        """The stored message with this digest; ``AuditError`` if missing or altered."""
        if not HEX64.fullmatch(digest):
            raise AuditError(f"not a message digest: {digest!r}")
        target = self.messages_dir / f"{digest}.eml"
        try:
            raw = target.read_bytes()
        except FileNotFoundError:
            raise AuditError(f"stored message {digest} is missing") from None
        except OSError as exc:
            raise AuditError(f"cannot read stored message {digest}: {exc.strerror}") from None
        if hashlib.sha256(raw).hexdigest() != digest:
            raise AuditError(f"stored message {digest} was altered: its bytes no longer match")
        return raw

    # ---------------------------------------------------------------- reading

    def head(self) -> tuple[int, str]:
        """``(line count, hash of the last line)`` of the log on disk, as :func:`head` says.

        Lines are counted once: a later call counts only what was appended since, so quoting
        the head in every message of a long run does not re-read the whole log each time.
        """
        count, digest, self._counted = count_head(self.path, self._counted)
        return count, digest

    def _chain_source(self) -> Path:
        return self.path

    def _artifacts(self) -> FileArtifacts:
        return FileArtifacts(self.messages_dir, self.timestamps_dir, self.head_path)

    def alive(self, worker: str) -> bool:
        return self.workers.alive(worker)

    def follow(self, cursor: int = 0) -> Iterator[tuple[Record, int]]:
        """Each record after byte offset ``cursor``, with the offset just past it: a reader
        keeping up with what this and other processes append."""
        return read_records(self.path, cursor, written=self._written)

    def message_digests(self) -> Iterator[str]:
        try:
            entries = sorted(self.messages_dir.iterdir())
        except FileNotFoundError:
            return
        except OSError as exc:
            raise AuditError(f"cannot read {self.messages_dir}: {exc.strerror}") from None
        for entry in entries:
            if entry.suffix == ".eml" and HEX64.fullmatch(entry.stem):
                yield entry.stem

    def _store_token(self, name: str, reply: bytes) -> Path:
        target = self.timestamps_dir / name
        try:
            make_dir(self.state_dir)
            make_dir(self.timestamps_dir)
            atomic_write(target, reply)
        except OSError as exc:
            raise AuditError(f"cannot store the timestamp token: {exc.strerror}") from None
        return target

    # ---------------------------------------------------------------- internals

    def _intent_worker(self) -> str:
        return self.workers.register()

    def _write_record(self, fd: int, tail: Tail, event: str, fields: Record) -> Record:
        return self._write_records(fd, tail, [(event, fields)])[0]

    def _write_records(
        self, fd: int, tail: Tail, items: list[tuple[str, Record]], *, sync: bool = True
    ) -> list[Record]:
        seq, prev = next_link(fd, tail)
        records: list[Record] = []
        lines: list[bytes] = []
        for event, fields in items:
            record, line = self._seal(event, fields, seq, prev)
            records.append(record)
            lines.append((line + "\n").encode("utf-8"))
            seq, prev = seq + 1, record["hash"]
        append_lines(fd, tail.size, b"".join(lines), sync=sync)
        ends = itertools.accumulate(map(len, lines), initial=tail.size)
        next(ends)
        self._written.add(os.fstat(fd).st_ino, tail.size, list(zip(records, ends, strict=True)))
        write_head_mark(self.head_path, records[-1]["seq"], records[-1]["hash"])
        return records

    def _repair(self, fd: int) -> Tail:
        """The tail to append after, once a torn last line is moved aside and recorded.

        Moving a torn line aside cuts the log before its ``torn-tail`` record is written; a crash
        in between leaves an aside file no record names. The first append of every open log
        records such orphans, so no cut bytes go unmentioned.
        """
        tail = read_tail(fd)
        if tail.torn is not None:
            move_torn(self, fd, tail.torn)
            tail = read_tail(fd)
        if not self._orphans_checked:
            self._orphans_checked = True
            if record_orphans(self, fd, tail):
                tail = read_tail(fd)
        return tail
