"""The range half of the cache: the most specific stored range holding an address, from memory
when this process has seen it, else from the store (whose rows are checked before use)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ..models import IPAddress
from .codec import Codec
from .index import FAILED, Range, RangeIndex, parse_range
from .protocol import IndexRow, Store, hex128

__all__ = ["RangeLayer"]


class RangeLayer:
    """What ``LookupCache`` does with ranges; it supplies the store, the guard and the events."""

    _index: dict[tuple[str, int], RangeIndex]
    _values: OrderedDict[int, tuple[float, str]]
    _memory_items: int

    def _codec(self, kind: str) -> Codec:
        raise NotImplementedError

    def _db(self) -> Store:
        raise NotImplementedError

    def _guarded(
        self, op: str, action: Callable[[], Any], default: Any, *, retry: bool = False
    ) -> Any:
        raise NotImplementedError

    def _emit(self, event: str, fields: dict[str, Any]) -> None:
        raise NotImplementedError

    def _count_dropped(self, n: int) -> None:
        raise NotImplementedError

    def _range_index(self, kind: str, version: int) -> RangeIndex:
        index = self._index.get((kind, version))
        if index is None:
            index = self._index[(kind, version)] = RangeIndex()
        return index

    def _lookup_memory(self, kind: str, ip: IPAddress, now: float) -> Any:
        bits = ip.max_prefixlen
        number = int(ip)
        index = self._range_index(kind, ip.version)
        for prefixlen in list(index.order):
            start = number >> (bits - prefixlen) << (bits - prefixlen)
            entry = index.ranges.get((prefixlen, start))
            if entry is None or number > entry.end:
                continue
            if entry.expires <= now:
                index.remove(prefixlen, start)
                continue
            value = self._range_value(kind, entry.value_id)
            if value is not None:
                return value
        return None

    def _lookup_range_db(self, kind: str, ip: IPAddress, now: float) -> Any:
        bits = ip.max_prefixlen
        number = int(ip)
        starts = sorted({hex128(number >> (bits - p) << (bits - p)) for p in range(bits + 1)})
        rows = self._db().ranges_at(kind, ip.version, starts, hex128(number), now)
        index = self._range_index(kind, ip.version)
        found: Any = None
        for prefixlen, start, end, value_id, expires, text in rows:
            parsed = parse_range(ip.version, prefixlen, start, end)
            if parsed is None or not isinstance(text, str):
                self._drop_value(kind, value_id, ValueError("malformed range row"))
                continue
            index.add(prefixlen, parsed[0], Range(parsed[1], float(expires), value_id))
            if found is None:
                self._remember_value(value_id, float(expires), text)
                found = self._decode_value(kind, value_id, text)
        return found

    def _range_value(self, kind: str, value_id: int) -> Any:
        held = self._values.get(value_id)
        if held is None:
            row = self._guarded("lookup_range", lambda: self._db().range_value(value_id), FAILED)
            if row is FAILED:
                return None
            if row is None or not isinstance(row[0], str):
                # gone: replaced or purged by another process
                self._forget_value(value_id)
                return None
            held = (float(row[1]), row[0])
            self._remember_value(value_id, *held)
        else:
            self._values.move_to_end(value_id)
        return self._decode_value(kind, value_id, held[1])

    def _remember_value(self, value_id: int, expires: float, text: str) -> None:
        self._values[value_id] = (expires, text)
        self._values.move_to_end(value_id)
        while len(self._values) > self._memory_items:
            self._values.popitem(last=False)

    def _decode_value(self, kind: str, value_id: int, text: str) -> Any:
        try:
            value = self._codec(kind).load(text)
        except ValueError as exc:
            self._drop_value(kind, value_id, exc)
            return None
        if value is None:
            self._drop_value(kind, value_id, ValueError("stored null"))
        return value

    def _forget_value(self, value_id: int) -> None:
        self._values.pop(value_id, None)
        for index in self._index.values():
            for key in [k for k, r in index.ranges.items() if r.value_id == value_id]:
                index.remove(*key)

    def _drop_value(self, kind: str, value_id: int, exc: Exception) -> None:
        self._count_dropped(1)
        self._forget_value(value_id)
        self._emit(
            "cache-corrupt-row", {"kind": kind, "range_value": value_id, "error": str(exc)[:200]}
        )
        self._guarded("drop", lambda: self._db().drop_values([value_id]), None)

    def _load_index(self, rows: list[IndexRow]) -> None:
        """Index every live range: a lookup must see all of them to pick the most specific."""
        self._index = {}
        bad: set[int] = set()
        for kind, version, prefixlen, start, end, value_id, expires in rows:
            parsed = parse_range(version, prefixlen, start, end)
            if parsed is None or not isinstance(kind, str) or not isinstance(expires, float | int):
                bad.add(value_id)
                continue
            self._range_index(kind, version).add(
                prefixlen, parsed[0], Range(parsed[1], float(expires), value_id)
            )
        if bad:
            self._count_dropped(len(bad))
            self._emit(
                "cache-corrupt-row", {"range_values": sorted(bad)[:20], "error": "bad range"}
            )
            self._db().drop_values(bad)
            for value_id in bad:
                self._forget_value(value_id)
