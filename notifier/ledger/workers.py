"""Which writers are alive, for the file store: each holds a lock on its own file while it runs.

An intent without outcome is in doubt only when the process that wrote it is gone; while it
still runs, the message is being delivered. The kernel drops a process's ``flock`` when it dies
(even by SIGKILL), so the lock says exactly that, with no lease to expire.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import uuid
from pathlib import Path

__all__ = ["FileWorkers"]

_ID = re.compile(r"[0-9a-f]{16}")


class FileWorkers:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.worker = uuid.uuid4().hex[:16]
        self._fd: int | None = None

    def register(self) -> str:
        """Hold this process's lock (from its first intent on); return its worker id."""
        if self._fd is None:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = self.directory / f"{self.worker}.lock"
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._fd = fd
        return self.worker

    def alive(self, worker: str) -> bool:
        if worker == self.worker:
            return True
        if not _ID.fullmatch(worker):
            return False
        path = self.directory / f"{worker}.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        else:
            with contextlib.suppress(OSError):
                path.unlink()  # its writer is gone: the file is not needed any more
            return False
        finally:
            os.close(fd)
