"""Answers kept between lookups and between runs: by name, and by address range.

A batch run asks about many addresses in the same few networks; the registry is asked once per
network and every later address in it is answered from here. ``LookupCache`` implements the
``Cache`` protocol of ``notifier.sources`` over one SQLite file (``<state.dir>/cache.sqlite``,
mode 0600, WAL, created on first use), with an in-memory layer in front of it.

Semantics callers rely on:

- ``None`` always means *miss*. A negative answer ("the registry knew nothing") is cached by
  storing an empty value such as ``[]``; storing ``None`` itself is refused with ``ValueError``.
- ``lookup_range`` answers with the value of the most specific unexpired range that contains the
  address (the longest prefix; the newest store among equals).
- Values are serialised per kind: kind ``"registry"`` holds ``list[SourceReport]`` (see
  ``dump_reports``/``load_reports``), every other kind holds plain JSON values (tuples come back as
  lists). Each hit decodes afresh, so a caller that mutates what it got cannot change what the
  next caller gets.
- The cache never raises SQLite errors to its callers: an undecodable row is deleted and counts as
  a miss, a corrupt database file is renamed aside and recreated, other database failures turn the
  call into a miss (or a skipped store). Each is reported through ``on_event``.
- Two processes may share the file: writes are short transactions under SQLite's busy timeout.
  The range index is read once per process, so a range another process stores is seen when this
  process misses, not when it already holds a less specific range for the address.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import sqlite3
import time
import types
import typing
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

from .models import IPAddress, SourceReport

if typing.TYPE_CHECKING:
    from .config import Settings

__all__ = [
    "CACHE_FILE",
    "CacheStats",
    "Codec",
    "EventHook",
    "JSON_CODEC",
    "LookupCache",
    "REPORTS_CODEC",
    "dump_reports",
    "load_reports",
]

CACHE_FILE = "cache.sqlite"
EventHook = Callable[[str, dict[str, Any]], None]

_SCHEMA_VERSION = 2
_REPORTS_FORMAT = 1
_HEX_WIDTH = 32  # 128 bits: IPv6 ints overflow SQLite's INTEGER; fixed-width hex sorts like ints
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
_MAX_ASIDE = 100


# --------------------------------------------------------------------------------------------
# Serialisation of the models


def _encode(value: Any) -> Any:
    """A JSON-able image of a model value, by the value's own type."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Enum):  # before str: a StrEnum is a str too
        return value.value
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_encode(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    raise TypeError(f"cannot serialise {type(value).__name__} for the cache")


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _decode(tp: Any, data: Any) -> Any:
    """Rebuild a value of annotated type ``tp`` from its JSON image (``ValueError`` if not one)."""
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        if len(others) != 1:
            raise ValueError(f"unsupported union {tp!r}")
        return _decode(others[0], data)
    if origin is list:
        if not isinstance(data, list):
            raise ValueError(f"expected a list, got {type(data).__name__}")
        (item,) = typing.get_args(tp)
        return [_decode(item, x) for x in data]
    if origin is tuple:
        if not isinstance(data, list):
            raise ValueError(f"expected a list, got {type(data).__name__}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], x) for x in data)
        if len(args) != len(data):
            raise ValueError(f"expected {len(args)} items, got {len(data)}")
        return tuple(_decode(a, x) for a, x in zip(args, data, strict=True))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _decode_dataclass(tp, data)
    if isinstance(tp, type) and issubclass(tp, Enum):
        return tp(data)  # ValueError on an unknown member
    if tp is datetime:
        if not isinstance(data, str):
            raise ValueError("expected an ISO 8601 string")
        return datetime.fromisoformat(data)
    if tp is bool:
        if not isinstance(data, bool):
            raise ValueError("expected a boolean")
        return data
    if tp is int:
        if not isinstance(data, int) or isinstance(data, bool):
            raise ValueError("expected an integer")
        return data
    if tp is float:
        if not isinstance(data, int | float) or isinstance(data, bool):
            raise ValueError("expected a number")
        return float(data)
    if tp is str:
        if not isinstance(data, str):
            raise ValueError("expected a string")
        return data
    raise ValueError(f"unsupported type {tp!r}")


def _decode_dataclass(cls: type, data: Any) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"expected an object for {cls.__name__}")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        # the model changed since the row was written: a miss is cheaper than a wrong answer
        raise ValueError(f"unknown fields for {cls.__name__}: {sorted(unknown)}")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _decode(hints[name], data[name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ValueError(f"missing field {cls.__name__}.{name}")
    return cls(**kwargs)


def dump_reports(reports: Iterable[SourceReport]) -> str:
    """Serialise source reports to JSON text that ``load_reports`` turns back into equal reports.

    Non-ASCII is escaped so that any Python string, lone surrogates included, survives storage.
    """
    items = []
    for report in reports:
        if not isinstance(report, SourceReport):
            raise TypeError(f"expected SourceReport, got {type(report).__name__}")
        items.append(_encode(report))
    return json.dumps({"format": _REPORTS_FORMAT, "reports": items}, separators=(",", ":"))


def load_reports(text: str) -> list[SourceReport]:
    """The reports ``dump_reports`` wrote; ``ValueError`` for anything else."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != _REPORTS_FORMAT:
        raise ValueError("not a serialised report list")
    reports = data.get("reports")
    if not isinstance(reports, list):
        raise ValueError("not a serialised report list")
    try:
        return [_decode_dataclass(SourceReport, item) for item in reports]
    except (TypeError, RecursionError) as exc:
        raise ValueError(str(exc)) from None


def _dump_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _load_json(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise ValueError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class Codec:
    """How values of one cache kind become text and back; ``load`` raises ``ValueError``."""

    dump: Callable[[Any], str]
    load: Callable[[str], Any]


REPORTS_CODEC = Codec(dump_reports, load_reports)
JSON_CODEC = Codec(_dump_json, _load_json)
# source answers kept by range (registry) or by name (PTR by address, security.txt by host,
# domain RDAP by registrable domain)
_DEFAULT_CODECS: Mapping[str, Codec] = {
    "registry": REPORTS_CODEC,
    "ptr": REPORTS_CODEC,
    "security.txt": REPORTS_CODEC,
    "domain-rdap": REPORTS_CODEC,
}


# --------------------------------------------------------------------------------------------
# The cache


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


@dataclass(frozen=True, slots=True)
class _Range:
    end: int
    expires: float
    value_id: int


@dataclass(slots=True)
class _RangeIndex:
    """Every stored range of one kind and IP version, keyed by (prefix length, first address)."""

    ranges: dict[tuple[int, int], _Range] = field(default_factory=dict)
    lengths: dict[int, int] = field(default_factory=dict)  # prefix length → how many ranges
    order: list[int] = field(default_factory=list)  # prefix lengths present, longest first

    def add(self, prefixlen: int, start: int, entry: _Range) -> None:
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


_FAILED = object()  # a database read that failed, as opposed to one that found nothing


def _holder_alive(holder: str) -> bool:
    """Whether the process that made an in-flight mark still runs (same machine: one cache file
    is shared only by processes on one machine)."""
    pid = holder.partition(":")[0]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by another user
    return True


class _Unavailable(Exception):
    """The database could not be opened; the cache runs as a pass-through."""


_SCHEMA = """
CREATE TABLE entries (
    kind TEXT NOT NULL,
    key BLOB NOT NULL,
    value TEXT NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE TABLE range_values (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    expires REAL NOT NULL
);
CREATE TABLE ranges (
    kind TEXT NOT NULL,
    version INTEGER NOT NULL,
    start TEXT NOT NULL,
    "end" TEXT NOT NULL,
    prefixlen INTEGER NOT NULL,
    value_id INTEGER NOT NULL,
    PRIMARY KEY (kind, version, start, prefixlen)
) WITHOUT ROWID;
CREATE INDEX ranges_value ON ranges (value_id);
CREATE TABLE in_flight (
    key BLOB PRIMARY KEY,
    holder TEXT NOT NULL,
    lease_until REAL NOT NULL
) WITHOUT ROWID;
"""


def _hex(number: int) -> str:
    return format(number, f"0{_HEX_WIDTH}x")


def _key_bytes(key: str) -> bytes:
    # host names from hostile answers may hold lone surrogates, which plain UTF-8 refuses
    return key.encode("utf-8", "surrogatepass")


class LookupCache:
    """The ``Cache`` of ``notifier.sources``: SQLite on disk, the hot part in memory.

    ``path`` is the database file; ``from_settings`` places it at ``<state.dir>/cache.sqlite``.
    ``clock`` gives the time in seconds for expiry; ``on_event(name, fields)`` hears about dropped
    rows (``cache-corrupt-row``), a replaced database (``cache-reset``), refused ranges
    (``cache-bad-cidr``) and database failures (``cache-error``, ``cache-unavailable``).
    ``codecs`` maps a kind to its ``Codec``; kinds not named use plain JSON.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        on_event: EventHook | None = None,
        codecs: Mapping[str, Codec] | None = None,
        memory_items: int = 4096,
        busy_timeout: float = 5.0,
    ) -> None:
        self.path = Path(path)
        self.stats = CacheStats()
        self._clock = clock
        self._on_event = on_event
        self._codecs = dict(_DEFAULT_CODECS if codecs is None else codecs)
        self._memory_items = max(1, memory_items)
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._unavailable = False
        self._local_ids = 0  # ids of values kept only in memory count down from -1
        # names this process's in-flight marks; the pid lets others see a killed holder's go
        self._holder = f"{os.getpid()}:{uuid.uuid4().hex}"
        self._reset_memory()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        on_event: EventHook | None = None,
    ) -> LookupCache:
        """The cache of a configured run, in its state directory."""
        return cls(settings.state_dir / CACHE_FILE, clock=clock, on_event=on_event)

    def __enter__(self) -> LookupCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database; a later call opens it again."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.close()
            except sqlite3.Error as exc:
                self._emit("cache-error", {"op": "close", "error": str(exc)})

    # -- the Cache protocol ------------------------------------------------------------------

    def get(self, kind: str, key: str) -> Any:
        """The value stored under ``(kind, key)``, or ``None`` when missing or expired."""
        now = self._clock()
        held = self._entries.get((kind, key))
        if held is not None:
            expires, text = held
            if expires > now:
                value = self._decode_entry(kind, key, text)
                if value is not None:
                    self._entries.move_to_end((kind, key))
                    self.stats.hits += 1
                    return value
            self._entries.pop((kind, key), None)
        value = self._guarded("get", lambda: self._get_db(kind, key, now), None)
        if value is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
        return value

    def put(self, kind: str, key: str, value: Any, ttl: float) -> None:
        """Keep ``value`` under ``(kind, key)`` for ``ttl`` seconds (``ttl <= 0`` keeps nothing)."""
        if value is None:
            raise ValueError("None means a miss; cache an empty value for a negative answer")
        text = self._codec(kind).dump(value)
        if ttl <= 0:
            return
        expires = self._clock() + ttl
        self.stats.stores += 1

        def write() -> None:
            conn = self._connection()
            conn.execute(
                "INSERT OR REPLACE INTO entries (kind, key, value, expires) VALUES (?, ?, ?, ?)",
                (kind, _key_bytes(key), text, expires),
            )

        self._guarded("put", write, None, retry=True)
        # after the write: setting a corrupt file aside empties the memory layer
        self._remember_entry(kind, key, expires, text)

    def lookup_range(self, kind: str, ip: IPAddress) -> Any:
        """The value of the most specific live range of ``kind`` holding ``ip``, or ``None``."""
        now = self._clock()
        self._guarded("open", self._connection, None)  # opening reads the range index
        value = self._lookup_memory(kind, ip, now)
        if value is None:
            # not known to this process: another process may have stored it since we opened
            value = self._guarded(
                "lookup_range", lambda: self._lookup_range_db(kind, ip, now), None
            )
        if value is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
        return value

    def store_range(self, kind: str, cidrs: list[str], value: Any, ttl: float) -> None:
        """Keep ``value`` for every address in ``cidrs`` for ``ttl`` seconds.

        Host bits are ignored (``10.1.2.3/8`` is ``10.0.0.0/8``); unparsable CIDRs are skipped and
        reported. Storing a CIDR again replaces its earlier value.
        """
        if value is None:
            raise ValueError("None means a miss; cache an empty value for a negative answer")
        text = self._codec(kind).dump(value)
        networks: dict[tuple[int, int, int], int] = {}
        for cidr in cidrs:
            try:
                net = ipaddress.ip_network(str(cidr).strip(), strict=False)
            except ValueError:
                self._emit("cache-bad-cidr", {"kind": kind, "cidr": str(cidr)[:100]})
                continue
            start = int(net.network_address)
            networks[(net.version, net.prefixlen, start)] = int(net.broadcast_address)
        if ttl <= 0 or not networks:
            return
        expires = self._clock() + ttl
        self.stats.stores += 1
        value_id = self._guarded(
            "store_range",
            lambda: self._store_range(kind, networks, text, expires),
            None,
            retry=True,
        )
        if value_id is None:
            # no database: keep the answer for this process at least
            self._local_ids -= 1
            value_id = self._local_ids
        for (version, prefixlen, start), end in networks.items():
            self._range_index(kind, version).add(prefixlen, start, _Range(end, expires, value_id))
        self._remember_value(value_id, expires, text)

    # -- what is being fetched right now, across processes -------------------------------------

    def claim(self, key: str, lease: float) -> bool:
        """Mark ``key`` as being fetched by this process for up to ``lease`` seconds; False when
        another live process holds it (wait for its answer in the cache instead of asking the
        same server again). A holder that died (even by SIGKILL) loses its mark at once; one
        that hangs, when the lease ends. With
        no database every claim succeeds: the process then works alone."""
        now = self._clock()

        def take() -> bool:
            conn = self._connection()
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                held = conn.execute(
                    "SELECT holder, lease_until FROM in_flight WHERE key = ?", (_key_bytes(key),)
                ).fetchone()
                if held is not None and (held[1] <= now or not _holder_alive(held[0])):
                    conn.execute("DELETE FROM in_flight WHERE key = ?", (_key_bytes(key),))
                conn.execute(
                    "INSERT OR IGNORE INTO in_flight (key, holder, lease_until) VALUES (?, ?, ?)",
                    (_key_bytes(key), self._holder, now + lease),
                )
                row = conn.execute(
                    "SELECT holder FROM in_flight WHERE key = ?", (_key_bytes(key),)
                ).fetchone()
            return row is None or row[0] == self._holder

        return bool(self._guarded("claim", take, True))

    def release(self, key: str) -> None:
        """Drop this process's mark on ``key`` (its answer is in the cache, or it gave up)."""

        def drop() -> None:
            self._connection().execute(
                "DELETE FROM in_flight WHERE key = ? AND holder = ?",
                (_key_bytes(key), self._holder),
            )

        self._guarded("release", drop, None)

    # -- internals: entries ------------------------------------------------------------------

    def _codec(self, kind: str) -> Codec:
        return self._codecs.get(kind, JSON_CODEC)

    def _reset_memory(self) -> None:
        self._entries: OrderedDict[tuple[str, str], tuple[float, str]] = OrderedDict()
        self._values: OrderedDict[int, tuple[float, str]] = OrderedDict()
        self._index: dict[tuple[str, int], _RangeIndex] = {}

    def _remember_entry(self, kind: str, key: str, expires: float, text: str) -> None:
        self._entries[(kind, key)] = (expires, text)
        self._entries.move_to_end((kind, key))
        while len(self._entries) > self._memory_items:
            self._entries.popitem(last=False)

    def _decode_entry(self, kind: str, key: str, text: str) -> Any:
        try:
            value = self._codec(kind).load(text)
        except ValueError as exc:
            self._drop_entry(kind, key, exc)
            return None
        if value is None:
            self._drop_entry(kind, key, ValueError("stored null"))
        return value

    def _drop_entry(self, kind: str, key: str, exc: Exception) -> None:
        self.stats.dropped += 1
        self._entries.pop((kind, key), None)
        self._emit("cache-corrupt-row", {"kind": kind, "key": key[:200], "error": str(exc)[:200]})

        def delete() -> None:
            self._connection().execute(
                "DELETE FROM entries WHERE kind = ? AND key = ?", (kind, _key_bytes(key))
            )

        self._guarded("drop", delete, None)

    def _get_db(self, kind: str, key: str, now: float) -> Any:
        row = (
            self._connection()
            .execute(
                "SELECT value, expires FROM entries WHERE kind = ? AND key = ? AND expires > ?",
                (kind, _key_bytes(key), now),
            )
            .fetchone()
        )
        if row is None:
            return None
        text, expires = row
        if not isinstance(text, str) or not isinstance(expires, int | float):
            self._drop_entry(kind, key, ValueError("wrong column types"))
            return None
        value = self._decode_entry(kind, key, text)
        if value is not None:
            self._remember_entry(kind, key, float(expires), text)
        return value

    # -- internals: ranges -------------------------------------------------------------------

    def _range_index(self, kind: str, version: int) -> _RangeIndex:
        index = self._index.get((kind, version))
        if index is None:
            index = self._index[(kind, version)] = _RangeIndex()
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
        starts = {_hex(number >> (bits - p) << (bits - p)) for p in range(bits + 1)}
        marks = ",".join("?" * len(starts))
        rows = (
            self._connection()
            .execute(
                f"""SELECT r.prefixlen, r.start, r."end", r.value_id, v.expires, v.value
                FROM ranges r JOIN range_values v ON v.id = r.value_id
                WHERE r.kind = ? AND r.version = ? AND r.start IN ({marks})
                  AND r."end" >= ? AND v.expires > ?
                ORDER BY r.prefixlen DESC, r.value_id DESC""",  # noqa: S608 - only placeholders
                (kind, ip.version, *sorted(starts), _hex(number), now),
            )
            .fetchall()
        )
        index = self._range_index(kind, ip.version)
        found: Any = None
        for prefixlen, start, end, value_id, expires, text in rows:
            parsed = self._parse_range(ip.version, prefixlen, start, end)
            if parsed is None or not isinstance(text, str):
                self._drop_value(kind, value_id, ValueError("malformed range row"))
                continue
            index.add(prefixlen, parsed[0], _Range(parsed[1], float(expires), value_id))
            if found is None:
                self._remember_value(value_id, float(expires), text)
                found = self._decode_value(kind, value_id, text)
        return found

    def _range_value(self, kind: str, value_id: int) -> Any:
        held = self._values.get(value_id)
        if held is None:
            row = self._guarded(
                "lookup_range",
                lambda: (
                    self._connection()
                    .execute("SELECT value, expires FROM range_values WHERE id = ?", (value_id,))
                    .fetchone()
                ),
                _FAILED,
            )
            if row is _FAILED:
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
        self.stats.dropped += 1
        self._forget_value(value_id)
        self._emit(
            "cache-corrupt-row", {"kind": kind, "range_value": value_id, "error": str(exc)[:200]}
        )

        def delete() -> None:
            conn = self._connection()
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("DELETE FROM ranges WHERE value_id = ?", (value_id,))
                conn.execute("DELETE FROM range_values WHERE id = ?", (value_id,))

        self._guarded("drop", delete, None)

    @staticmethod
    def _parse_range(version: Any, prefixlen: Any, start: Any, end: Any) -> tuple[int, int] | None:
        """A stored range's (start, end) when it is a well-formed CIDR, else ``None``."""
        bits = {4: 32, 6: 128}.get(version)
        if bits is None or not isinstance(prefixlen, int) or not 0 <= prefixlen <= bits:
            return None
        if not isinstance(start, str) or not isinstance(end, str):
            return None
        if len(start) != _HEX_WIDTH or len(end) != _HEX_WIDTH:
            return None
        try:
            first, last = int(start, 16), int(end, 16)
        except ValueError:
            return None
        host = (1 << (bits - prefixlen)) - 1
        if first & host or last != first | host or last >> bits:
            return None
        return first, last

    def _store_range(
        self, kind: str, networks: dict[tuple[int, int, int], int], text: str, expires: float
    ) -> int:
        conn = self._connection()
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            cursor = conn.execute(
                "INSERT INTO range_values (kind, value, expires) VALUES (?, ?, ?)",
                (kind, text, expires),
            )
            value_id = cursor.lastrowid
            assert value_id is not None
            replaced: set[int] = set()
            for (version, prefixlen, start), end in networks.items():
                row = conn.execute(
                    "SELECT value_id FROM ranges "
                    "WHERE kind = ? AND version = ? AND start = ? AND prefixlen = ?",
                    (kind, version, _hex(start), prefixlen),
                ).fetchone()
                if row is not None:
                    replaced.add(row[0])
                conn.execute(
                    "INSERT OR REPLACE INTO ranges"
                    ' (kind, version, start, "end", prefixlen, value_id) VALUES (?, ?, ?, ?, ?, ?)',
                    (kind, version, _hex(start), _hex(end), prefixlen, value_id),
                )
            for old in replaced:
                conn.execute(
                    "DELETE FROM range_values WHERE id = ? "
                    "AND NOT EXISTS (SELECT 1 FROM ranges WHERE value_id = ?)",
                    (old, old),
                )
        for old in replaced:
            self._values.pop(old, None)
        return value_id

    # -- internals: the database -------------------------------------------------------------

    def _emit(self, event: str, fields: dict[str, Any]) -> None:
        if self._on_event is not None:
            self._on_event(event, fields)

    def _guarded(
        self, op: str, action: Callable[[], Any], default: Any, *, retry: bool = False
    ) -> Any:
        """Run a database action; failures become ``default`` and an event, never an exception."""
        for attempt in range(2):
            if self._unavailable:
                return default
            try:
                return action()
            except _Unavailable:
                return default
            except sqlite3.DatabaseError as exc:
                if self._is_corrupt(exc):
                    self._set_aside(exc)
                    if retry and attempt == 0:
                        continue
                    return default
                self._emit("cache-error", {"op": op, "error": str(exc)})
                return default
        return default

    @staticmethod
    def _is_corrupt(exc: sqlite3.DatabaseError) -> bool:
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(code, int):
            return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
        return type(exc) is sqlite3.DatabaseError  # not Operational: never a busy database

    def _set_aside(self, exc: Exception) -> None:
        """Move a corrupt database (and its WAL) out of the way; the next call starts afresh."""
        self.close()
        self._reset_memory()
        aside: Path | None = None
        for n in range(_MAX_ASIDE):
            candidate = self.path.with_name(f"{self.path.name}.corrupt" + (f".{n}" if n else ""))
            if not candidate.exists():
                aside = candidate
                break
        try:
            if aside is None:
                aside = self.path.with_name(f"{self.path.name}.corrupt")
                self.path.unlink(missing_ok=True)
            else:
                self.path.replace(aside)
            for suffix in ("-wal", "-shm"):
                companion = self.path.with_name(self.path.name + suffix)
                if companion.exists():
                    # a stale WAL next to a new database would be replayed into it
                    companion.replace(aside.with_name(aside.name + suffix))
        except OSError as move_error:
            self._unavailable = True
            self._emit("cache-unavailable", {"path": str(self.path), "error": str(move_error)})
            return
        self._emit(
            "cache-reset", {"path": str(self.path), "moved_to": str(aside), "error": str(exc)}
        )

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            os.chmod(self.path, 0o600)  # tighten a file an earlier umask left open
        except OSError as exc:
            self._unavailable = True
            self._emit("cache-unavailable", {"path": str(self.path), "error": str(exc)})
            raise _Unavailable from exc
        conn = sqlite3.connect(
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=True
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._migrate(conn)
            self._purge(conn)
            self._load_index(conn)
        except BaseException:
            conn.close()
            self._reset_memory()
            raise
        self._conn = conn
        return conn

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version == _SCHEMA_VERSION:
            return
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version == _SCHEMA_VERSION:  # another process got here first
                return
            # an older layout, or a file we do not know: a cache can always start over
            for table in ("entries", "ranges", "range_values", "in_flight"):
                conn.execute(f"DROP TABLE IF EXISTS {table}")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    def _purge(self, conn: sqlite3.Connection) -> None:
        now = self._clock()
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM entries WHERE expires <= ?", (now,))
            conn.execute(
                "DELETE FROM ranges WHERE value_id IN "
                "(SELECT id FROM range_values WHERE expires <= ?)",
                (now,),
            )
            conn.execute(
                "DELETE FROM range_values WHERE expires <= ? "
                "OR NOT EXISTS (SELECT 1 FROM ranges WHERE value_id = range_values.id)",
                (now,),
            )

    def _load_index(self, conn: sqlite3.Connection) -> None:
        """Read every live range: a lookup must see all of them to pick the most specific."""
        self._index = {}
        bad: set[int] = set()
        rows = conn.execute(
            """SELECT r.kind, r.version, r.prefixlen, r.start, r."end", r.value_id, v.expires
            FROM ranges r JOIN range_values v ON v.id = r.value_id"""
        )
        for kind, version, prefixlen, start, end, value_id, expires in rows:
            parsed = self._parse_range(version, prefixlen, start, end)
            if parsed is None or not isinstance(kind, str) or not isinstance(expires, float | int):
                bad.add(value_id)
                continue
            self._range_index(kind, version).add(
                prefixlen, parsed[0], _Range(parsed[1], float(expires), value_id)
            )
        if bad:
            self.stats.dropped += len(bad)
            self._emit(
                "cache-corrupt-row", {"range_values": sorted(bad)[:20], "error": "bad range"}
            )
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                for value_id in bad:
                    conn.execute("DELETE FROM ranges WHERE value_id = ?", (value_id,))
                    conn.execute("DELETE FROM range_values WHERE id = ?", (value_id,))
            for value_id in bad:
                self._forget_value(value_id)
