"""Low-level file I/O of the file store: tails, torn lines, atomic writes, line counting."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..errors import AuditError
from .chain import GENESIS, MAX_RECORD_BYTES, last_hash

__all__ = [
    "TornTail",
    "Tail",
    "read_tail",
    "fsync_dir",
    "make_dir",
    "atomic_write",
    "atomic_write_all",
    "file_sha256",
    "iter_lines",
    "count_lines",
    "head",
]


@dataclass(frozen=True, slots=True)
class TornTail:
    """Bytes after the last newline: a line whose write a crash interrupted."""

    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class Tail:
    size: int
    end: int  # offset just past the last newline
    last: bytes | None  # the last complete line, without its newline
    torn: TornTail | None


def read_tail(fd: int) -> Tail:
    """Find the last complete line and any torn bytes after it, reading backwards in chunks."""
    size = os.fstat(fd).st_size
    newlines: list[int] = []
    pos = size
    while pos > 0 and len(newlines) < 2:
        if len(newlines) == 1 and newlines[0] - pos > MAX_RECORD_BYTES:
            break  # the last line is over the cap: no need to find where it starts
        start = max(0, pos - 65_536)
        block = os.pread(fd, pos - start, start)
        index = len(block)
        while len(newlines) < 2:
            index = block.rfind(b"\n", 0, index)
            if index < 0:
                break
            newlines.append(start + index)
        pos = start
    if not newlines:
        return Tail(size, 0, None, TornTail(0, size) if size else None)
    end = newlines[0] + 1
    begin = newlines[1] + 1 if len(newlines) > 1 else pos
    if end - begin - 1 > MAX_RECORD_BYTES:
        last = b""  # unreadable as a record either way; the caller refuses it
    else:
        last = os.pread(fd, end - begin - 1, begin)
    torn = TornTail(end, size - end) if size > end else None
    return Tail(size, end, last, torn)


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        # some filesystems refuse fsync on directories; the data itself was synced
        if exc.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)


def make_dir(directory: Path) -> None:
    if not directory.is_dir():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fsync_dir(directory.parent)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a 0600 temporary file, fsync, rename, fsync the directory."""
    atomic_write_all([(path, data)])


def atomic_write_all(files: Iterable[tuple[Path, bytes]]) -> None:
    """``atomic_write`` of each ``(path, data)``: all written, then each synced (the first sync
    carries most of the others' blocks), then renamed, and each folder synced once."""
    written: list[tuple[int, Path, Path]] = []
    try:
        for path, data in files:
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            written.append((fd, tmp, path))
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        for fd, _, _ in written:
            os.fsync(fd)
    except BaseException:
        for fd, tmp, _ in written:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise
    for fd, tmp, path in written:
        os.close(fd)
        os.replace(tmp, path)
    for folder in dict.fromkeys(path.parent for _, _, path in written):
        fsync_dir(folder)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def iter_lines(handle: IO[bytes]) -> Iterator[bytes]:
    """Lines with their newline kept (the last one may lack it); over-long ones cut at the cap."""
    while True:
        raw = handle.readline(MAX_RECORD_BYTES + 1)
        if not raw:
            return
        yield raw


def count_lines(fd: int, end: int, start: int = 0) -> int:
    count = 0
    offset = start
    while offset < end:
        block = os.pread(fd, min(1 << 20, end - offset), offset)
        if not block:
            break
        count += block.count(b"\n")
        offset += len(block)
    return count


def head(path: str | os.PathLike[str]) -> tuple[int, str]:
    """``(line count, hash of the last line)``; ``(0, GENESIS)`` for a missing or empty log.

    A torn last line is not counted. ``AuditIntegrityError`` if the last line is not a record.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0, GENESIS
    except OSError as exc:
        raise AuditError(f"cannot read {path}: {exc.strerror}") from None
    try:
        tail = read_tail(fd)
        if tail.last is None:
            return 0, GENESIS
        count = count_lines(fd, tail.end)
    finally:
        os.close(fd)
    return count, last_hash(tail.last, count)
