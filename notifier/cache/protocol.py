"""What the cache asks of a database (``Store``), and how a store reports a failure.

``LookupCache`` keeps the hot part in memory and asks a ``Store`` for the rest. A store turns its
driver's failures into ``StoreError`` (the call becomes a miss) or ``StoreCorrupt`` (the file is
damaged: set it aside and start over); ``StoreUnavailable`` means it cannot be opened at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

__all__ = [
    "HEX_WIDTH",
    "IndexRow",
    "Networks",
    "RangeRow",
    "Store",
    "StoreCorrupt",
    "StoreError",
    "StoreUnavailable",
    "hex128",
]

HEX_WIDTH = 32  # 128 bits: IPv6 ints overflow SQLite's INTEGER; fixed-width hex sorts like ints

# (kind, version, prefixlen, start, end, value_id, expires): a stored range, read on open
IndexRow = tuple[Any, Any, Any, Any, Any, Any, Any]
# (prefixlen, start, end, value_id, expires, value): a range holding one address
RangeRow = tuple[Any, Any, Any, Any, Any, Any]
Networks = dict[tuple[int, int, int], int]  # (version, prefixlen, start) → end


class StoreError(Exception):
    """A database call failed; the cache treats it as a miss or a skipped store."""


class StoreCorrupt(StoreError):
    """The database file is damaged."""


class StoreUnavailable(StoreError):
    """The database cannot be opened; the cache works from memory."""


def hex128(number: int) -> str:
    return format(number, f"0{HEX_WIDTH}x")


class Store(Protocol):
    """The database behind a ``LookupCache`` (``SqliteStore``, or ``PgStore`` for a team)."""

    where: str

    def open(self, now: float) -> list[IndexRow] | None:
        """Connect if not connected; then every live range (to index), else ``None``."""

    def close(self) -> None: ...

    def get(self, kind: str, key: bytes, now: float) -> tuple[Any, Any] | None:
        """``(value, expires)`` of a live entry."""

    def get_many(self, kind: str, keys: list[bytes], now: float) -> list[tuple[Any, Any, Any]]:
        """``(key, value, expires)`` of the live entries among ``keys``."""

    def put(self, kind: str, key: bytes, text: str, expires: float) -> None: ...

    def put_many(self, rows: list[tuple[str, bytes, str, float]]) -> None:
        """Several ``put`` in one transaction."""

    def delete(self, kind: str, key: bytes) -> None: ...

    def store_range(
        self, kind: str, networks: Networks, text: str, expires: float
    ) -> tuple[int, set[int]]:
        """Keep one value for every range; its id and the ids of values it replaced."""

    def ranges_at(
        self, kind: str, version: int, starts: list[str], number: str, now: float
    ) -> list[RangeRow]:
        """The live ranges among ``starts`` holding ``number``, most specific first."""

    def range_value(self, value_id: int) -> tuple[Any, Any] | None: ...

    def drop_values(self, value_ids: Iterable[int]) -> None: ...

    def claim(self, key: bytes, lease: float, now: float) -> bool:
        """Mark ``key`` as being fetched by this process; False while a live other holds it."""

    def release(self, key: bytes) -> None: ...

    def release_many(self, keys: list[bytes]) -> None: ...

    def reserve(self, key: str, interval: float, hold: float) -> float:
        """The next free turn for ``key`` (turns ``interval`` apart, none in the next ``hold``
        seconds): taken, and how many seconds from now it is."""

    def set_aside(self) -> str:
        """Move a damaged database out of the way (``OSError`` if it cannot be); where to."""
