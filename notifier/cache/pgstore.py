"""The lookup cache in PostgreSQL (``[state] url``): one cache for every process on every
machine naming the database, and one view of what is being fetched right now.

A mark on a key in flight names its holder by a session advisory lock that holder's connection
keeps for its whole life: when the process dies, on whatever machine and however (SIGKILL
included), the server drops the lock and the next claimant takes the key at once; a holder that
hangs loses it when its lease ends. The tables come with the ledger's schema
(``notify db init|migrate``).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import psycopg

from ..ratelimit import shared_turn
from .protocol import IndexRow, Networks, RangeRow, StoreError, StoreUnavailable, hex128
from .sql import UPSERT, SqlStore

__all__ = ["PgStore"]

_F = TypeVar("_F", bound=Callable[..., Any])
_HOLDER_SPACE = b"notifier-cache-holder:"


def _translated(method: _F) -> _F:
    @functools.wraps(method)
    def run(self: PgStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except psycopg.Error as exc:
            if self._conn is not None and self._conn.closed:
                self._conn = None  # reconnect on the next call
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise StoreError(first) from exc

    return run  # type: ignore[return-value]


def _lock_id(holder: str) -> int:
    digest = hashlib.sha256(_HOLDER_SPACE + holder.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PgStore(SqlStore):
    """The ``Store`` of a ``LookupCache`` shared through PostgreSQL."""

    def __init__(self, url: str, holder: str) -> None:
        from ..ledger.pg import redact

        self.url = url
        self.where = f"the database {redact(url)}"
        self._holder = holder
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None

    def open(self, now: float) -> list[IndexRow] | None:
        if self._conn is not None:
            return None
        from ..errors import ConfigError
        from ..ledger.pg import connect

        try:
            conn = connect(self.url)  # checks the schema version
        except ConfigError as exc:
            raise StoreUnavailable(str(exc)) from None
        try:
            # held while this process lives: others see its marks as live
            conn.execute("SELECT pg_advisory_lock(%s)", (_lock_id(self._holder),))
            with conn.transaction():
                conn.execute("DELETE FROM cache_entries WHERE expires <= %s", (now,))
                conn.execute(
                    "DELETE FROM cache_ranges WHERE value_id IN "
                    "(SELECT id FROM cache_values WHERE expires <= %s)",
                    (now,),
                )
                conn.execute("DELETE FROM cache_values WHERE expires <= %s", (now,))
            rows = conn.execute(
                """SELECT r.kind, r.version, r.prefixlen, r.start, r."end", r.value_id, v.expires
                FROM cache_ranges r JOIN cache_values v ON v.id = r.value_id"""
            ).fetchall()
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(str(exc).strip() or type(exc).__name__) from exc
        self._conn = conn
        return rows

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    def _db(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._conn is None:
            raise StoreError("the cache database is not open")
        return self._conn

    @_translated
    def _one(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        return self._db().execute(sql.replace("?", "%s").encode(), params).fetchone()

    @_translated
    def _run(self, sql: str, params: tuple[Any, ...]) -> None:
        self._db().execute(sql.replace("?", "%s").encode(), params)

    @_translated
    def _all(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return self._db().execute(sql.replace("?", "%s").encode(), params).fetchall()

    @_translated
    def put_many(self, rows: list[tuple[str, bytes, str, float]]) -> None:
        conn = self._db()
        with conn.transaction(), conn.cursor() as cursor:
            cursor.executemany(UPSERT.replace("?", "%s").encode(), rows)

    @_translated
    def store_range(
        self, kind: str, networks: Networks, text: str, expires: float
    ) -> tuple[int, set[int]]:
        conn = self._db()
        with conn.transaction():
            row = conn.execute(
                "INSERT INTO cache_values (kind, value, expires) VALUES (%s, %s, %s) RETURNING id",
                (kind, text, expires),
            ).fetchone()
            assert row is not None
            value_id = int(row[0])
            replaced: set[int] = set()
            for (version, prefixlen, start), end in sorted(networks.items()):
                old = conn.execute(
                    """INSERT INTO cache_ranges (kind, version, start, "end", prefixlen, value_id)
                    VALUES (%s, %s, %s, %s, %s, %s)
                    ON CONFLICT (kind, version, start, prefixlen) DO UPDATE
                    SET "end" = excluded."end", value_id = excluded.value_id
                    RETURNING (SELECT value_id FROM cache_ranges
                               WHERE kind = %s AND version = %s AND start = %s
                                 AND prefixlen = %s)""",
                    (kind, version, hex128(start), hex128(end), prefixlen, value_id)
                    + (kind, version, hex128(start), prefixlen),
                ).fetchone()
                if old is not None and old[0] is not None and old[0] != value_id:
                    replaced.add(int(old[0]))
            for gone in replaced:
                conn.execute(
                    "DELETE FROM cache_values WHERE id = %s "
                    "AND NOT EXISTS (SELECT 1 FROM cache_ranges WHERE value_id = %s)",
                    (gone, gone),
                )
        return value_id, replaced

    @_translated
    def ranges_at(
        self, kind: str, version: int, starts: list[str], number: str, now: float
    ) -> list[RangeRow]:
        return (
            self._db()
            .execute(
                """SELECT r.prefixlen, r.start, r."end", r.value_id, v.expires, v.value
                FROM cache_ranges r JOIN cache_values v ON v.id = r.value_id
                WHERE r.kind = %s AND r.version = %s AND r.start = ANY(%s)
                  AND r."end" >= %s AND v.expires > %s
                ORDER BY r.prefixlen DESC, r.value_id DESC""",
                (kind, version, starts, number, now),
            )
            .fetchall()
        )

    @_translated
    def drop_values(self, value_ids: Iterable[int]) -> None:
        ids = list(value_ids)
        conn = self._db()
        with conn.transaction():
            conn.execute("DELETE FROM cache_ranges WHERE value_id = ANY(%s)", (ids,))
            conn.execute("DELETE FROM cache_values WHERE id = ANY(%s)", (ids,))

    @_translated
    def claim(self, key: bytes, lease: float, now: float) -> bool:
        conn = self._db()
        with conn.transaction():
            took = conn.execute(
                "INSERT INTO cache_in_flight (key, holder, lease_until) VALUES (%s, %s, %s) "
                "ON CONFLICT (key) DO NOTHING RETURNING holder",
                (key, self._holder, now + lease),
            ).fetchone()
            if took is not None:
                return True
            held = conn.execute(
                "SELECT holder, lease_until FROM cache_in_flight WHERE key = %s FOR UPDATE",
                (key,),
            ).fetchone()
            if held is not None and held[0] != self._holder:
                if held[1] > now and self._alive(conn, str(held[0])):
                    return False
            conn.execute(
                "INSERT INTO cache_in_flight (key, holder, lease_until) VALUES (%s, %s, %s) "
                "ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, "
                "lease_until = excluded.lease_until",
                (key, self._holder, now + lease),
            )
        return True

    @staticmethod
    def _alive(conn: psycopg.Connection[tuple[Any, ...]], holder: str) -> bool:
        lock = _lock_id(holder)
        row = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (lock,)).fetchone()
        # taken: nobody holds it, so its holder is gone (the lock ends with this transaction)
        return not (row is not None and row[0])

    @_translated
    def reserve(self, key: str, interval: float, hold: float) -> float:
        conn = self._db()
        with conn.transaction():
            conn.execute(
                "INSERT INTO cache_pace (key, next) VALUES (%s, 0) ON CONFLICT DO NOTHING", (key,)
            )
            # the server's clock: workers on several machines pace by one clock
            row = conn.execute(
                "SELECT next, extract(epoch FROM clock_timestamp())::float8 "
                "FROM cache_pace WHERE key = %s FOR UPDATE",
                (key,),
            ).fetchone()
            assert row is not None
            now = float(row[1])
            # a new row's 0 is long past: its first turn starts now, with nothing to catch up
            due = float(row[0]) or None
            start, turn = shared_turn(due, now, interval, hold)
            conn.execute("UPDATE cache_pace SET next = %s WHERE key = %s", (turn, key))
        return start - now

    def set_aside(self) -> str:
        raise OSError("a shared database is never moved aside")
