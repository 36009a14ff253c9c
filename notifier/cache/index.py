"""The memory layer's view of stored address ranges: the most specific one holding an address
is found by masking the address once per prefix length present."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .protocol import HEX_WIDTH

__all__ = ["FAILED", "Range", "RangeIndex", "key_bytes", "parse_range"]


@dataclass(frozen=True, slots=True)
class Range:
    end: int
    expires: float
    value_id: int


@dataclass(slots=True)
class RangeIndex:
    """Every stored range of one kind and IP version, keyed by (prefix length, first address)."""

    ranges: dict[tuple[int, int], Range] = field(default_factory=dict)
    lengths: dict[int, int] = field(default_factory=dict)  # prefix length → how many ranges
    order: list[int] = field(default_factory=list)  # prefix lengths present, longest first

    def add(self, prefixlen: int, start: int, entry: Range) -> None:
        if (prefixlen, start) not in self.ranges:
            self.lengths[prefixlen] = self.lengths.get(prefixlen, 0) + 1
            if self.lengths[prefixlen] == 1:
                self.order = sorted(self.lengths, reverse=True)
        self.ranges[(prefixlen, start)] = entry

    def remove(self, prefixlen: int, start: int) -> None:
        if self.ranges.pop((prefixlen, start), None) is not None:
            self.lengths[prefixlen] -= 1
            if not self.lengths[prefixlen]:
                del self.lengths[prefixlen]
                self.order = sorted(self.lengths, reverse=True)


FAILED = object()  # a database read that failed, as opposed to one that found nothing


def key_bytes(key: str) -> bytes:
    # host names from hostile answers may hold lone surrogates, which plain UTF-8 refuses
    return key.encode("utf-8", "surrogatepass")


def parse_range(version: Any, prefixlen: Any, start: Any, end: Any) -> tuple[int, int] | None:
    """A stored range's (start, end) when it is a well-formed CIDR, else ``None``."""
    bits = {4: 32, 6: 128}.get(version)
    if bits is None or not isinstance(prefixlen, int) or not 0 <= prefixlen <= bits:
        return None
    if not isinstance(start, str) or not isinstance(end, str):
        return None
    if len(start) != HEX_WIDTH or len(end) != HEX_WIDTH:
        return None
    try:
        first, last = int(start, 16), int(end, 16)
    except ValueError:
        return None
    host = (1 << (bits - prefixlen)) - 1
    if first & host or last != first | host or last >> bits:
        return None
    return first, last
