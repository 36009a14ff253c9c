"""The chain file on disk: how ``audit.jsonl`` is locked, appended to, counted and read back.

Functions over paths and descriptors, no state of their own: ``AuditLog`` (``files``) keeps the
state (where the log is, what it counted last) and calls these.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from ..errors import AuditError, AuditIntegrityError
from .chain import GENESIS, MAX_RECORD_BYTES, LineError, Record, last_hash, parse_line
from .evidence import format_head_mark
from .fileio import Tail, TornTail, count_lines, fsync_dir, make_dir, read_tail

__all__ = [
    "Written",
    "append_lines",
    "sync_log",
    "count_head",
    "detect_torn",
    "locked",
    "next_link",
    "read_records",
    "write_head_mark",
]


@contextlib.contextmanager
def locked(path: Path, lock_path: Path) -> Iterator[int]:
    """Hold the sidecar lock and yield a read/append descriptor on the log at ``path``."""
    state_dir = path.parent
    try:
        make_dir(state_dir)
        lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise AuditError(f"cannot open the audit log lock: {exc.strerror}") from None
    try:
        # a blocking flock queues in the kernel, so a busy writer cannot starve another the way
        # polling would; the lock is held only for a tail read and one write + fsync
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
        except OSError as exc:
            raise AuditError(f"cannot lock the audit log: {exc.strerror}") from None
        try:
            created = not path.exists()
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            if created:
                fsync_dir(state_dir)
        except OSError as exc:
            raise AuditError(f"cannot open {path}: {exc.strerror}") from None
        try:
            yield fd
        finally:
            os.close(fd)
    finally:
        os.close(lock_fd)  # closing the descriptor releases the flock


def next_link(fd: int, tail: Tail) -> tuple[int, str]:
    """``(seq, prev)`` of the next record after ``tail``; refuses to chain onto a damaged line."""
    if tail.last is None:
        return 1, GENESIS
    try:
        last = parse_line(tail.last)
    except LineError as exc:
        line = tail.end and count_lines(fd, tail.end)
        raise AuditIntegrityError(
            f"the last line of the audit log is damaged ({exc.detail}); "
            "nothing appended: run the log verification",
            line=line,
        ) from None
    return last["seq"] + 1, last["hash"]


def append_lines(fd: int, size: int, data: bytes, *, sync: bool = True) -> None:
    """Write ``data`` in one ``write`` and (``sync``) ``fsync`` it; on a failed write cut the
    log back to ``size``."""
    try:
        written = os.write(fd, data)
    except OSError as exc:
        _roll_back(fd, size)
        raise AuditError(f"cannot write the audit log: {exc.strerror}") from None
    if written != len(data):
        _roll_back(fd, size)
        raise AuditError("cannot write the audit log: short write (disk full?)")
    if sync:
        sync_log(fd)


def sync_log(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        raise AuditError(f"cannot flush the audit log to disk: {exc.strerror}") from None


def _roll_back(fd: int, size: int) -> None:
    # a partial line left behind would be recovered as torn later; cutting it now is cleaner
    with contextlib.suppress(OSError):
        os.ftruncate(fd, size)


def write_head_mark(head_path: Path, count: int, digest: str) -> None:
    # one fixed-size write at offset 0: never torn into a shorter, still-parsable head; not
    # synced (a stale mark is an older head, which the log still holds)
    try:
        fd = os.open(head_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.pwrite(fd, format_head_mark(count, digest), 0)
        finally:
            os.close(fd)
    except OSError as exc:
        raise AuditError(f"cannot record the log head: {exc.strerror}") from None


def detect_torn(path: Path) -> TornTail | None:
    """The torn last line of the log at ``path``, if a crash left one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AuditError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return read_tail(fd).torn
    finally:
        os.close(fd)


Counted = tuple[int, int, int]  # (inode, offset, complete lines before it)


def count_head(path: Path, counted: Counted | None) -> tuple[int, str, Counted | None]:
    """``(line count, hash of the last line, what was counted)``; counting resumes at
    ``counted`` when the file is still the same one and no shorter."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0, GENESIS, None
    except OSError as exc:
        raise AuditError(f"cannot read {path}: {exc.strerror}") from None
    try:
        inode = os.fstat(fd).st_ino
        tail = read_tail(fd)
        if tail.last is None:
            return 0, GENESIS, None
        if counted is not None and counted[0] == inode and counted[1] <= tail.end:
            count = counted[2] + count_lines(fd, tail.end, start=counted[1])
        else:
            count = count_lines(fd, tail.end)
    finally:
        os.close(fd)
    return count, last_hash(tail.last, count), (inode, tail.end, count)


class Written:
    """The records this process appended lately, by where their lines begin: a reader of the
    log takes them from here instead of parsing its own lines again (an intent, some 10 kB, costs
    60 us to parse, and each process of a relayed batch reads every record). A reader takes a
    run of them once; what no reader took (or a second reader looks for) is read from the file."""

    _MOST = 64  # runs kept: the oldest go first, a reader that far behind reads the file

    def __init__(self) -> None:
        self._runs: dict[tuple[int, int], list[tuple[Record, int]]] = {}
        self._lock = threading.Lock()  # appends are made in the group commit's thread

    def add(self, inode: int, start: int, run: list[tuple[Record, int]]) -> None:
        """``run``: the records written from ``start`` on, each with the offset past its line."""
        with self._lock:
            self._runs[(inode, start)] = run
            while len(self._runs) > self._MOST:
                del self._runs[next(iter(self._runs))]

    def take(self, inode: int, start: int) -> list[tuple[Record, int]] | None:
        with self._lock:
            return self._runs.pop((inode, start), None)


def read_records(
    path: Path, offset: int = 0, line: int = 0, written: Written | None = None
) -> Iterator[tuple[Record, int]]:
    """Each complete record after the first ``line`` lines (``offset`` bytes) of the log at
    ``path``, with the offset just past it; those this process wrote, from ``written``.

    A torn last line ends the stream. Raises ``AuditIntegrityError`` on a line that is not
    a record, or when the log is shorter than ``offset`` (it was cut or replaced).
    """
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        if offset:
            raise AuditIntegrityError("the audit log disappeared", line=line) from None
        return
    except OSError as exc:
        raise AuditError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        status = os.fstat(handle.fileno())
        if status.st_size < offset:
            raise AuditIntegrityError("the audit log became shorter", line=line)
        handle.seek(offset)
        while True:
            run = written.take(status.st_ino, offset) if written is not None else None
            if run is not None:
                for record, offset in run:  # noqa: B007 - the offset goes on past the run
                    line += 1
                    yield record, offset
                handle.seek(offset)
                continue
            raw = handle.readline(MAX_RECORD_BYTES + 1)
            if not raw:
                return
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
