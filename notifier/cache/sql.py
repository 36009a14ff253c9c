"""What the two stores' SQL has in common: one set of table names, and the statements that read
and write them alike, written with ``?`` placeholders (the PostgreSQL store hands them to its
driver as ``%s``)."""

from __future__ import annotations

from typing import Any

__all__ = ["UPSERT", "SqlStore"]

UPSERT = (
    "INSERT INTO cache_entries (kind, key, value, expires) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value, expires = excluded.expires"
)
_KEYS_A_STATEMENT = 500  # under SQLite's oldest limit of 999 parameters a statement


class SqlStore:
    """The statements both stores run as they are; each store runs them on its own driver."""

    _holder: str

    def _one(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        raise NotImplementedError

    def _run(self, sql: str, params: tuple[Any, ...]) -> None:
        raise NotImplementedError

    def _all(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def get_many(self, kind: str, keys: list[bytes], now: float) -> list[tuple[Any, Any, Any]]:
        marks = ", ".join("?" * len(keys))
        return self._all(
            f"SELECT key, value, expires FROM cache_entries "  # noqa: S608 - only placeholders
            f"WHERE kind = ? AND key IN ({marks}) AND expires > ?",
            (kind, *keys, now),
        )

    def get(self, kind: str, key: bytes, now: float) -> tuple[Any, Any] | None:
        row = self._one(
            "SELECT value, expires FROM cache_entries WHERE kind = ? AND key = ? AND expires > ?",
            (kind, key, now),
        )
        return None if row is None else (row[0], row[1])

    def put(self, kind: str, key: bytes, text: str, expires: float) -> None:
        self._run(UPSERT, (kind, key, text, expires))

    def delete(self, kind: str, key: bytes) -> None:
        self._run("DELETE FROM cache_entries WHERE kind = ? AND key = ?", (kind, key))

    def range_value(self, value_id: int) -> tuple[Any, Any] | None:
        row = self._one("SELECT value, expires FROM cache_values WHERE id = ?", (value_id,))
        return None if row is None else (row[0], row[1])

    def release(self, key: bytes) -> None:
        self._run("DELETE FROM cache_in_flight WHERE key = ? AND holder = ?", (key, self._holder))

    def release_many(self, keys: list[bytes]) -> None:
        for start in range(0, len(keys), _KEYS_A_STATEMENT):
            chunk = keys[start : start + _KEYS_A_STATEMENT]
            marks = ",".join("?" * len(chunk))
            self._run(
                f"DELETE FROM cache_in_flight WHERE holder = ? AND key IN ({marks})",  # noqa: S608
                (self._holder, *chunk),
            )
