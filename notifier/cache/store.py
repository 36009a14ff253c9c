"""The embedded store behind the lookup cache: one SQLite file under ``state.dir``."""

from __future__ import annotations

import functools
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from ..ratelimit import shared_turn
from .protocol import (
    IndexRow,
    Networks,
    RangeRow,
    StoreCorrupt,
    StoreError,
    StoreUnavailable,
    hex128,
)
from .sql import UPSERT, SqlStore

__all__ = ["SqliteStore"]

_SCHEMA_VERSION = 4  # 4: the tables named as in PostgreSQL
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
_MAX_ASIDE = 100


_F = TypeVar("_F", bound=Callable[..., Any])


def _translated(method: _F) -> _F:
    @functools.wraps(method)
    def run(self: SqliteStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            code = getattr(exc, "sqlite_errorcode", None)
            if isinstance(code, int):
                corrupt = code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
            else:
                corrupt = type(exc) is sqlite3.DatabaseError  # not Operational: never busy
            raise (StoreCorrupt if corrupt else StoreError)(str(exc)) from exc

    return run  # type: ignore[return-value]


_SCHEMA = """
CREATE TABLE cache_entries (
    kind TEXT NOT NULL,
    key BLOB NOT NULL,
    value TEXT NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE TABLE cache_values (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    expires REAL NOT NULL
);
CREATE TABLE cache_ranges (
    kind TEXT NOT NULL,
    version INTEGER NOT NULL,
    start TEXT NOT NULL,
    "end" TEXT NOT NULL,
    prefixlen INTEGER NOT NULL,
    value_id INTEGER NOT NULL,
    PRIMARY KEY (kind, version, start, prefixlen)
) WITHOUT ROWID;
CREATE INDEX cache_ranges_value ON cache_ranges (value_id);
CREATE TABLE cache_in_flight (
    key BLOB PRIMARY KEY,
    holder TEXT NOT NULL,
    lease_until REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE cache_pace (
    key TEXT PRIMARY KEY,
    next REAL NOT NULL
) WITHOUT ROWID;
"""


def _holder_alive(holder: str) -> bool:
    """Whether the process that made an in-flight mark still runs (one cache file is shared
    only by processes on one machine, so its pid says)."""
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


class SqliteStore(SqlStore):
    """``<state.dir>/cache.sqlite``: mode 0600, WAL, created on first use, shared by the
    processes of one machine through short transactions under SQLite's busy timeout."""

    def __init__(self, path: Path, holder: str, *, busy_timeout: float = 5.0) -> None:
        self.path = path
        self.where = str(path)
        self._holder = holder
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None

    @_translated
    def open(self, now: float) -> list[IndexRow] | None:
        if self._conn is not None:
            return None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            os.chmod(self.path, 0o600)  # tighten a file an earlier umask left open
        except OSError as exc:
            raise StoreUnavailable(str(exc)) from exc
        conn = sqlite3.connect(
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=True
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            _migrate(conn)
            _purge(conn, now)
            rows = conn.execute(
                """SELECT r.kind, r.version, r.prefixlen, r.start, r."end", r.value_id, v.expires
                FROM cache_ranges r JOIN cache_values v ON v.id = r.value_id"""
            ).fetchall()
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return rows

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.close()
            except sqlite3.Error as exc:
                raise StoreError(str(exc)) from exc

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the cache database is not open")
        return self._conn

    @_translated
    def _one(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._db().execute(sql, params).fetchone()
        return row

    @_translated
    def _run(self, sql: str, params: tuple[Any, ...]) -> None:
        self._db().execute(sql, params)

    @_translated
    def _all(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self._db().execute(sql, params).fetchall()
        return rows

    @_translated
    def put_many(self, rows: list[tuple[str, bytes, str, float]]) -> None:
        conn = self._db()
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(UPSERT, rows)

    @_translated
    def store_range(
        self, kind: str, networks: Networks, text: str, expires: float
    ) -> tuple[int, set[int]]:
        conn = self._db()
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            cursor = conn.execute(
                "INSERT INTO cache_values (kind, value, expires) VALUES (?, ?, ?)",
                (kind, text, expires),
            )
            value_id = cursor.lastrowid
            assert value_id is not None
            replaced: set[int] = set()
            for (version, prefixlen, start), end in networks.items():
                row = conn.execute(
                    "SELECT value_id FROM cache_ranges "
                    "WHERE kind = ? AND version = ? AND start = ? AND prefixlen = ?",
                    (kind, version, hex128(start), prefixlen),
                ).fetchone()
                if row is not None:
                    replaced.add(row[0])
                conn.execute(
                    "INSERT OR REPLACE INTO cache_ranges"
                    ' (kind, version, start, "end", prefixlen, value_id) VALUES (?, ?, ?, ?, ?, ?)',
                    (kind, version, hex128(start), hex128(end), prefixlen, value_id),
                )
            for old in replaced:
                conn.execute(
                    "DELETE FROM cache_values WHERE id = ? "
                    "AND NOT EXISTS (SELECT 1 FROM cache_ranges WHERE value_id = ?)",
                    (old, old),
                )
        return value_id, replaced

    @_translated
    def ranges_at(
        self, kind: str, version: int, starts: list[str], number: str, now: float
    ) -> list[RangeRow]:
        marks = ",".join("?" * len(starts))
        return (
            self._db()
            .execute(
                f"""SELECT r.prefixlen, r.start, r."end", r.value_id, v.expires, v.value
                FROM cache_ranges r JOIN cache_values v ON v.id = r.value_id
                WHERE r.kind = ? AND r.version = ? AND r.start IN ({marks})
                  AND r."end" >= ? AND v.expires > ?
                ORDER BY r.prefixlen DESC, r.value_id DESC""",  # noqa: S608 - only placeholders
                (kind, version, *starts, number, now),
            )
            .fetchall()
        )

    @_translated
    def drop_values(self, value_ids: Iterable[int]) -> None:
        conn = self._db()
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            for value_id in value_ids:
                conn.execute("DELETE FROM cache_ranges WHERE value_id = ?", (value_id,))
                conn.execute("DELETE FROM cache_values WHERE id = ?", (value_id,))

    @_translated
    def claim(self, key: bytes, lease: float, now: float) -> bool:
        conn = self._db()
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            held = conn.execute(
                "SELECT holder, lease_until FROM cache_in_flight WHERE key = ?", (key,)
            ).fetchone()
            if held is not None and (held[1] <= now or not _holder_alive(held[0])):
                conn.execute("DELETE FROM cache_in_flight WHERE key = ?", (key,))
            conn.execute(
                "INSERT OR IGNORE INTO cache_in_flight (key, holder, lease_until) VALUES (?, ?, ?)",
                (key, self._holder, now + lease),
            )
            row = conn.execute(
                "SELECT holder FROM cache_in_flight WHERE key = ?", (key,)
            ).fetchone()
        return row is None or row[0] == self._holder

    @_translated
    def reserve(self, key: str, interval: float, hold: float) -> float:
        conn = self._db()
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            now = time.time()  # one file, one machine: one clock
            row = conn.execute("SELECT next FROM cache_pace WHERE key = ?", (key,)).fetchone()
            start, turn = shared_turn(float(row[0]) if row else None, now, interval, hold)
            conn.execute("INSERT OR REPLACE INTO cache_pace (key, next) VALUES (?, ?)", (key, turn))
        return start - now

    def set_aside(self) -> str:
        self._conn = None  # the caller closed it
        aside: Path | None = None
        for n in range(_MAX_ASIDE):
            candidate = self.path.with_name(f"{self.path.name}.corrupt" + (f".{n}" if n else ""))
            if not candidate.exists():
                aside = candidate
                break
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
        return str(aside)


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
        for table in (
            "entries",
            "ranges",
            "range_values",
            "in_flight",
            "pace",  # the layouts before 4
            "cache_entries",
            "cache_ranges",
            "cache_values",
            "cache_in_flight",
            "cache_pace",
        ):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")


def _purge(conn: sqlite3.Connection, now: float) -> None:
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM cache_entries WHERE expires <= ?", (now,))
        conn.execute(
            "DELETE FROM cache_ranges "
            "WHERE value_id IN (SELECT id FROM cache_values WHERE expires <= ?)",
            (now,),
        )
        conn.execute(
            "DELETE FROM cache_values WHERE expires <= ? "
            "OR NOT EXISTS (SELECT 1 FROM cache_ranges WHERE value_id = cache_values.id)",
            (now,),
        )
