"""What a cache reports of itself, and the name it goes by among the processes sharing it."""

from __future__ import annotations

import dataclasses
import os
import socket
import uuid
from dataclasses import dataclass

__all__ = ["CacheStats", "new_holder"]


@dataclass(slots=True)
class CacheStats:
    """Counters since the cache was opened: lookups answered, lookups missed, values stored,
    and undecodable rows dropped."""

    hits: int = 0
    misses: int = 0
    stores: int = 0
    dropped: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def new_holder() -> str:
    """A name for this process's in-flight marks; the pid first lets processes on one machine
    see a killed holder go."""
    return f"{os.getpid()}:{socket.gethostname()[:64]}:{uuid.uuid4().hex}"
