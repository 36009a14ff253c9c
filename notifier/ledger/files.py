"""The file store: ``<state.dir>/audit.jsonl`` and the folders beside it.

Files under the state directory::

    audit.jsonl                    one JSON record a line, each carrying the hash of the line before
    audit.jsonl.lock               sidecar lock: one writer at a time, across processes
    audit.jsonl.torn-<n>           the bytes of a line a crash cut short, moved aside, never dropped
    messages/<sha256>.eml          the exact bytes of every message handed to a mail server
    timestamps/<N>-<hash16>.tsr    RFC 3161 replies over the chain head ``N:HASH``
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519

from ..errors import AuditError, AuditIntegrityError
from .base import Guard, Ledger
from .chain import (
    GENESIS,
    HEX64,
    LOG_NAME,
    MAX_RECORD_BYTES,
    Clock,
    LineError,
    Record,
    canonical,
    last_hash,
    parse_line,
    record_hash,
    utc_iso,
)
from .evidence import FileArtifacts, format_head_mark
from .fileio import (
    Tail,
    TornTail,
    atomic_write,
    count_lines,
    file_sha256,
    fsync_dir,
    iter_lines,
    make_dir,
    read_tail,
)
from .keys import load_signing_key
from .torn import move_torn, record_orphans
from .verify import VerifyReport, verify
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
        self.torn_tail: TornTail | None = self._detect_torn()
        self._orphans_checked = False
        # (inode, offset, complete lines before it): where ``head`` stopped counting last time
        self._counted: tuple[int, int, int] | None = None

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
        with self._locked() as fd:
            tail = self._repair(fd)
            keep = [guard is None or guard() for guard in guards]
            chosen = [item for item, kept in zip(items, keep, strict=True) if kept]
            written = iter(self._write_records(fd, tail, chosen) if chosen else [])
            return [next(written) if kept else None for kept in keep]

    def recover(self) -> Record | None:
        """Move a torn last line aside now; return the ``torn-tail`` record, or None if intact."""
        with self._locked() as fd:
            tail = read_tail(fd)
            if tail.torn is None:
                self.torn_tail = None
                return None
            return move_torn(self, fd, tail.torn)

    def store_message(self, raw: bytes) -> str:
        """Keep the exact bytes of a message as ``messages/<sha256>.eml``; return the digest."""
        digest = hashlib.sha256(raw).hexdigest()
        try:
            make_dir(self.state_dir)
            make_dir(self.messages_dir)
            target = self.messages_dir / f"{digest}.eml"
            if target.is_file() and file_sha256(target) == digest:
                return digest
            atomic_write(target, raw)
        except OSError as exc:
            raise AuditError(f"cannot store message {digest}: {exc.strerror or exc}") from None
        return digest

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
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self._counted = None
            return 0, GENESIS
        except OSError as exc:
            raise AuditError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            inode = os.fstat(fd).st_ino
            tail = read_tail(fd)
            if tail.last is None:
                self._counted = None
                return 0, GENESIS
            known = self._counted
            if known is not None and known[0] == inode and known[1] <= tail.end:
                count = known[2] + count_lines(fd, tail.end, start=known[1])
            else:
                count = count_lines(fd, tail.end)
        finally:
            os.close(fd)
        digest = last_hash(tail.last, count)
        self._counted = (inode, tail.end, count)
        return count, digest

    def verify(
        self,
        *,
        head: tuple[int, str] | None = None,
        public_key: ed25519.Ed25519PublicKey | None = None,
        tsa_trust: Iterable[x509.Certificate] | None = None,
    ) -> VerifyReport:
        """:func:`verify` over this log with its own message store and timestamp tokens."""
        if public_key is None and self._signer is not None:
            public_key = self._signer.public_key()
        return verify(
            self.path,
            head=head,
            public_key=public_key,
            tsa_trust=tsa_trust,
            artifacts=FileArtifacts(self.messages_dir, self.timestamps_dir, self.head_path),
        )

    def records_from(self, offset: int = 0, line: int = 0) -> Iterator[tuple[Record, int]]:
        """Each complete record after the first ``line`` lines (``offset`` bytes) of the log,
        with the offset just past it: a reader keeping up with what this and other processes
        append.

        A torn last line ends the stream. Raises ``AuditIntegrityError`` on a line that is not
        a record, or when the log is shorter than ``offset`` (it was cut or replaced).
        """
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            if offset:
                raise AuditIntegrityError("the audit log disappeared", line=line) from None
            return
        except OSError as exc:
            raise AuditError(f"cannot read {self.path}: {exc.strerror}") from None
        with handle:
            if os.fstat(handle.fileno()).st_size < offset:
                raise AuditIntegrityError("the audit log became shorter", line=line)
            handle.seek(offset)
            for raw in iter_lines(handle):
                line += 1
                if not raw.endswith(b"\n"):
                    if len(raw) > MAX_RECORD_BYTES:
                        raise AuditIntegrityError(f"line {line} is too long", line=line)
                    return
                try:
                    value = json.loads(raw)
                except (ValueError, RecursionError):
                    raise AuditIntegrityError(f"line {line} is not JSON", line=line) from None
                if not isinstance(value, dict):
                    raise AuditIntegrityError(f"line {line} is not a record", line=line)
                offset += len(raw)
                yield value, offset

    def alive(self, worker: str) -> bool:
        return self.workers.alive(worker)

    def follow(self, cursor: int = 0) -> Iterator[tuple[Record, int]]:
        """Each record after byte offset ``cursor``, with the offset just past it."""
        return self.records_from(cursor)

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

    def _detect_torn(self) -> TornTail | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise AuditError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            return read_tail(fd).torn
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        """Hold the sidecar lock and yield a read/append descriptor on the log."""
        try:
            make_dir(self.state_dir)
            lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise AuditError(f"cannot open the audit log lock: {exc.strerror}") from None
        try:
            self._acquire(lock_fd)
            try:
                created = not self.path.exists()
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
                if created:
                    fsync_dir(self.state_dir)
            except OSError as exc:
                raise AuditError(f"cannot open {self.path}: {exc.strerror}") from None
            try:
                yield fd
            finally:
                os.close(fd)
        finally:
            os.close(lock_fd)  # closing the descriptor releases the flock

    @staticmethod
    def _acquire(lock_fd: int) -> None:
        # a blocking flock queues in the kernel, so a busy writer cannot starve another the way
        # polling would; the lock is held only for a tail read and one write + fsync
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
        except OSError as exc:
            raise AuditError(f"cannot lock the audit log: {exc.strerror}") from None

    def _write_record(self, fd: int, tail: Tail, event: str, fields: Record) -> Record:
        return self._write_records(fd, tail, [(event, fields)])[0]

    def _write_records(self, fd: int, tail: Tail, items: list[tuple[str, Record]]) -> list[Record]:
        if tail.last is None:
            seq, prev = 1, GENESIS
        else:
            try:
                last = parse_line(tail.last)
            except LineError as exc:
                line = tail.end and count_lines(fd, tail.end)
                raise AuditIntegrityError(
                    f"the last line of the audit log is damaged ({exc.detail}); "
                    "nothing appended: run the log verification",
                    line=line,
                ) from None
            seq, prev = last["seq"] + 1, last["hash"]
        records: list[Record] = []
        lines: list[bytes] = []
        for event, fields in items:
            if event == "intent" and fields.get("worker") is None:
                fields = {**fields, "worker": self.workers.register()}
            record: Record = {
                **fields,
                "seq": seq,
                "time": utc_iso(self._clock()),
                "event": event,
            }
            record["prev"] = prev
            if self._signer is not None and event == "outcome":
                record["key_id"] = self._key_id
            record["hash"] = record_hash(record)
            if self._signer is not None and event == "outcome":
                signature = self._signer.sign(bytes.fromhex(record["hash"]))
                record["sig"] = base64.b64encode(signature).decode("ascii")
            encoded = (canonical(record) + "\n").encode("utf-8")
            if len(encoded) > MAX_RECORD_BYTES:
                raise ValueError(f"audit record too large ({len(encoded)} bytes)")
            records.append(record)
            lines.append(encoded)
            seq, prev = seq + 1, record["hash"]
        data = b"".join(lines)
        try:
            written = os.write(fd, data)
        except OSError as exc:
            self._roll_back(fd, tail.size)
            raise AuditError(f"cannot write the audit log: {exc.strerror}") from None
        if written != len(data):
            self._roll_back(fd, tail.size)
            raise AuditError("cannot write the audit log: short write (disk full?)")
        try:
            os.fsync(fd)
        except OSError as exc:
            raise AuditError(f"cannot flush the audit log to disk: {exc.strerror}") from None
        self._mark(records[-1]["seq"], records[-1]["hash"])
        return records

    def _mark(self, count: int, digest: str) -> None:
        # one fixed-size write at offset 0: never torn into a shorter, still-parsable head; not
        # synced (a stale mark is an older head, which the log still holds)
        try:
            fd = os.open(self.head_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.pwrite(fd, format_head_mark(count, digest), 0)
            finally:
                os.close(fd)
        except OSError as exc:
            raise AuditError(f"cannot record the log head: {exc.strerror}") from None

    @staticmethod
    def _roll_back(fd: int, size: int) -> None:
        # a partial line left behind would be recovered as torn later; cutting it now is cleaner
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)

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
