"""``LookupCache``: answers kept between lookups and between runs, by name and by address range,
the hot part in memory in front of a ``Store`` (SQLite under ``state.dir``, or PostgreSQL)."""

from __future__ import annotations

import ipaddress
import os
import time
import typing
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ..models import IPAddress
from .codec import DEFAULT_CODECS, JSON_CODEC, Codec
from .index import Range, RangeIndex, key_bytes
from .protocol import Store, StoreCorrupt, StoreError, StoreUnavailable
from .ranges import RangeLayer
from .stats import CacheStats, new_holder
from .store import SqliteStore

if typing.TYPE_CHECKING:
    from ..config import Settings

__all__ = ["CACHE_FILE", "EventHook", "LookupCache"]

CACHE_FILE = "cache.sqlite"
_MAX_ABSENT = 100_000  # keys noted missing by ``preload``, at most
EventHook = Callable[[str, dict[str, Any]], None]


class LookupCache(RangeLayer):
    """The ``Cache`` of ``notifier.sources``: a database behind, the hot part in memory.

    Semantics callers rely on:

    - ``None`` always means *miss*. A negative answer is cached by storing an empty value such
      as ``[]``; storing ``None`` itself is refused with ``ValueError``.
    - ``lookup_range`` answers with the value of the most specific unexpired range that contains
      the address (the longest prefix; the newest store among equals).
    - Values are serialised per kind (``codecs``; kinds not named use plain JSON). Each hit
      decodes afresh, so a caller that mutates what it got cannot change what the next gets.
    - The cache never raises database errors to its callers: an undecodable row is deleted and
      counts as a miss, a corrupt SQLite file is renamed aside and recreated, other failures
      turn the call into a miss (or a skipped store). Each is reported through ``on_event``
      (``cache-corrupt-row``, ``cache-reset``, ``cache-bad-cidr``, ``cache-error``,
      ``cache-unavailable``).
    - Processes share the database: the range index is read once per process, so a range
      another process stores is seen when this process misses, not when it already holds a
      less specific range for the address. ``claim``/``release`` say what is being fetched.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        store: Store | None = None,
        holder: str | None = None,
        clock: Callable[[], float] = time.time,
        on_event: EventHook | None = None,
        codecs: Mapping[str, Codec] | None = None,
        memory_items: int = 4096,
        busy_timeout: float = 5.0,
    ) -> None:
        self.holder = holder or new_holder()
        if store is None:
            if path is None:
                raise ValueError("a LookupCache needs a path or a store")
            store = SqliteStore(Path(path), self.holder, busy_timeout=busy_timeout)
        self.path = Path(path) if path is not None else None
        self.store = store
        self.stats = CacheStats()
        self._clock = clock
        self._on_event = on_event
        self._codecs = dict(DEFAULT_CODECS if codecs is None else codecs)
        self._memory_items = max(1, memory_items)
        self._unavailable = False
        self._local_ids = 0  # ids of values kept only in memory count down from -1
        # stores held back to be written together (0: each at once); see ``write_behind``
        self.write_behind = 0
        self._unwritten: dict[tuple[str, bytes], tuple[str, float]] = {}
        self._reset_memory()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        on_event: EventHook | None = None,
    ) -> LookupCache:
        """The cache of a configured run: in ``[state] url`` when set, else in ``state.dir``."""
        if settings.state.url:
            from .pgstore import PgStore

            holder = new_holder()
            store = PgStore(settings.state.url, holder)
            return cls(store=store, holder=holder, clock=clock, on_event=on_event)
        return cls(settings.state_dir / CACHE_FILE, clock=clock, on_event=on_event)

    def __enter__(self) -> LookupCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Write what is held back, close the database; a later call opens it again."""
        self.flush()
        try:
            self.store.close()
        except StoreError as exc:
            self._emit("cache-error", {"op": "close", "error": str(exc)})

    # -- the Cache protocol ------------------------------------------------------------------

    def get(self, kind: str, key: str) -> Any:
        """The value stored under ``(kind, key)``, or ``None`` when missing or expired."""
        now = self._clock()
        held = self._entries.get((kind, key))
        if held is None and self._absent:
            try:
                self._absent.remove((kind, key))
            except KeyError:
                pass
            else:  # ``preload`` found it missing just now
                self.stats.misses += 1
                return None
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
        self._absent.discard((kind, key))
        if self.write_behind > 0:
            self._unwritten[(kind, key_bytes(key))] = (text, expires)
            self._remember_entry(kind, key, expires, text)
            if len(self._unwritten) >= self.write_behind:
                self.flush()
            return
        self._guarded(
            "put", lambda: self._db().put(kind, key_bytes(key), text, expires), None, retry=True
        )
        # after the write: setting a corrupt file aside empties the memory layer
        self._remember_entry(kind, key, expires, text)

    def preload(self, kind: str, keys: list[str]) -> None:
        """Read the entries of ``keys`` in one query, for the ``get`` of each that follows.

        A batch asks for an answer per address: one query for some hundred addresses costs a
        fraction of one each. A key the store does not hold is noted, and its next ``get`` is a
        miss without asking again; any trouble with the store leaves those ``get`` to ask.
        """
        wanted = list(dict.fromkeys(k for k in keys if (kind, k) not in self._entries))
        if not wanted:
            return
        now = self._clock()
        rows = self._guarded(
            "get", lambda: self._db().get_many(kind, [key_bytes(k) for k in wanted], now), None
        )
        if rows is None:
            return
        found: set[str] = set()
        for key, text, expires in rows:
            if isinstance(text, str) and isinstance(expires, int | float):
                name = bytes(key).decode("utf-8", "surrogatepass")
                self._remember_entry(kind, name, float(expires), text)
                found.add(name)
        if len(self._absent) > _MAX_ABSENT:  # noted but never asked for: start again
            self._absent.clear()
        self._absent.update((kind, k) for k in wanted if k not in found)

    def flush(self) -> None:
        """Write the stores held back (``write_behind``) in one transaction.

        A batch stores an answer per address; written together they cost one transaction (on
        PostgreSQL, one round trip) instead of one each. Other processes see them once
        written: before this process lets go of anything it holds (``release``), and when it
        claims something (they may be waiting for what it learnt).
        """
        if not self._unwritten:
            return
        rows = [
            (kind, key, text, expires) for (kind, key), (text, expires) in self._unwritten.items()
        ]
        self._unwritten = {}
        self._guarded("put", lambda: self._db().put_many(rows), None, retry=True)

    def lookup_range(self, kind: str, ip: IPAddress) -> Any:
        """The value of the most specific live range of ``kind`` holding ``ip``, or ``None``."""
        now = self._clock()
        self._guarded("open", self._db, None)  # opening reads the range index
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

        def write() -> int:
            value_id, replaced = self._db().store_range(kind, networks, text, expires)
            for old in replaced:
                self._values.pop(old, None)
            return value_id

        value_id = self._guarded("store_range", write, None, retry=True)
        if value_id is None:
            # no database: keep the answer for this process at least
            self._local_ids -= 1
            value_id = self._local_ids
        for (version, prefixlen, start), end in networks.items():
            self._range_index(kind, version).add(prefixlen, start, Range(end, expires, value_id))
        self._remember_value(value_id, expires, text)

    # -- what is being fetched right now, across processes -------------------------------------

    def claim(self, key: str, lease: float) -> bool:
        """Mark ``key`` as being fetched by this process for up to ``lease`` seconds; False when
        another live process holds it (wait for its answer in the cache instead of asking the
        same server again). A holder that died (even by SIGKILL) loses its mark at once; one
        that hangs, when the lease ends. With no database every claim succeeds: the process
        then works alone."""
        self.flush()
        now = self._clock()
        return bool(
            self._guarded("claim", lambda: self._db().claim(key_bytes(key), lease, now), True)
        )

    def release(self, key: str) -> None:
        """Drop this process's mark on ``key`` (its answer is in the cache, or it gave up)."""
        self.flush()
        self._guarded("release", lambda: self._db().release(key_bytes(key)), None)

    def release_many(self, keys: Iterable[str]) -> None:
        """``release`` of each of ``keys``, a few hundred a statement (a batch lets go of the
        blocks it looked up all at once: one statement each cost 8 ms at 300)."""
        self.flush()
        wanted = [key_bytes(key) for key in keys]
        if wanted:
            self._guarded("release", lambda: self._db().release_many(wanted), None)

    def reserve(self, key: str, interval: float, hold: float = 0.0) -> float | None:
        """Take the next turn for ``key`` among every process sharing the store (turns
        ``interval`` seconds apart, none in the next ``hold``): seconds until it; ``None``
        without a database, when the process must pace itself alone."""
        self.flush()
        found = self._guarded("reserve", lambda: self._db().reserve(key, interval, hold), None)
        return None if found is None else float(found)

    # -- internals: entries ------------------------------------------------------------------

    def _codec(self, kind: str) -> Codec:
        return self._codecs.get(kind, JSON_CODEC)

    def _reset_memory(self) -> None:
        self._absent: set[tuple[str, str]] = set()  # missing from the store, per ``preload``
        self._entries: OrderedDict[tuple[str, str], tuple[float, str]] = OrderedDict()
        self._values: OrderedDict[int, tuple[float, str]] = OrderedDict()
        self._index: dict[tuple[str, int], RangeIndex] = {}

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
        self._guarded("drop", lambda: self._db().delete(kind, key_bytes(key)), None)

    def _get_db(self, kind: str, key: str, now: float) -> Any:
        row = self._unwritten.get((kind, key_bytes(key))) or self._db().get(
            kind, key_bytes(key), now
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

    # -- internals: the database -------------------------------------------------------------

    def _count_dropped(self, n: int) -> None:
        self.stats.dropped += n

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
            except StoreUnavailable as exc:
                self._unavailable = True
                self._emit("cache-unavailable", {"path": self.store.where, "error": str(exc)})
                return default
            except StoreCorrupt as exc:
                self._set_aside(exc)
                if retry and attempt == 0:
                    continue
                return default
            except StoreError as exc:
                self._emit("cache-error", {"op": op, "error": str(exc)})
                return default
        return default

    def _set_aside(self, exc: Exception) -> None:
        """Move a corrupt database (and its WAL) out of the way; the next call starts afresh."""
        self.close()
        self._reset_memory()
        try:
            aside = self.store.set_aside()
        except OSError as move_error:
            self._unavailable = True
            self._emit("cache-unavailable", {"path": self.store.where, "error": str(move_error)})
            return
        self._emit("cache-reset", {"path": self.store.where, "moved_to": aside, "error": str(exc)})

    def _db(self) -> Store:
        rows = self.store.open(self._clock())
        if rows is not None:
            try:
                self._load_index(rows)
            except BaseException:
                self.close()
                self._reset_memory()
                raise
        return self.store
