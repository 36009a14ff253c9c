"""The PostgreSQL schema, as numbered migrations; ``notify db init|migrate`` applies them.

Each migration runs in one transaction with the version it brings recorded in
``schema_version``; a database is at the highest version recorded there. The tool refuses a
database at another version than its own, naming the command that fixes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    import psycopg

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "check_version", "current_version", "migrate"]

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        # 1: the chain, its head (the row every append locks), stored messages, tokens
        """CREATE TABLE ledger_head (
            id boolean PRIMARY KEY DEFAULT true CHECK (id),
            seq bigint NOT NULL,
            hash text NOT NULL
        )""",
        "INSERT INTO ledger_head (id, seq, hash) VALUES (true, 0, repeat('0', 64))",
        # ``line``: the exact JSON line the file store would hold (exports are byte for byte)
        "CREATE TABLE ledger (seq bigint PRIMARY KEY, line text NOT NULL)",
        "CREATE TABLE messages (digest text PRIMARY KEY, raw bytea NOT NULL)",
        "CREATE TABLE tokens (name text PRIMARY KEY, reply bytea NOT NULL)",
    ),
    (
        # 2: the shared lookup cache and what is being fetched right now, with leases
        """CREATE TABLE lookup_cache (
            key text PRIMARY KEY,
            value bytea NOT NULL,
            expires timestamptz NOT NULL
        )""",
        """CREATE TABLE in_flight (
            key text PRIMARY KEY,
            holder text NOT NULL,
            lease_until timestamptz NOT NULL
        )""",
    ),
    (
        # 3: the lookup cache by name and by address range, as the file store keeps it
        # (expiry in seconds since the epoch), what is being fetched, and each registry's pace
        "DROP TABLE IF EXISTS lookup_cache",
        "DROP TABLE IF EXISTS in_flight",
        """CREATE TABLE cache_entries (
            kind text NOT NULL,
            key bytea NOT NULL,
            value text NOT NULL,
            expires double precision NOT NULL,
            PRIMARY KEY (kind, key)
        )""",
        """CREATE TABLE cache_values (
            id bigserial PRIMARY KEY,
            kind text NOT NULL,
            value text NOT NULL,
            expires double precision NOT NULL
        )""",
        """CREATE TABLE cache_ranges (
            kind text NOT NULL,
            version smallint NOT NULL,
            start text NOT NULL,
            "end" text NOT NULL,
            prefixlen smallint NOT NULL,
            value_id bigint NOT NULL,
            PRIMARY KEY (kind, version, start, prefixlen)
        )""",
        "CREATE INDEX cache_ranges_value ON cache_ranges (value_id)",
        """CREATE TABLE cache_in_flight (
            key bytea PRIMARY KEY,
            holder text NOT NULL,
            lease_until double precision NOT NULL
        )""",
        # each registry's next free turn, so workers together keep to its rate
        "CREATE TABLE cache_pace (key text PRIMARY KEY, next double precision NOT NULL)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def current_version(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    """The schema version of the database (0: no notifier schema at all)."""
    exists = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    return int(str(row[0])) if row else 0


def check_version(conn: psycopg.Connection[tuple[object, ...]], where: str) -> None:
    """``ConfigError`` naming the fix when the database's schema is not this version's."""
    version = current_version(conn)
    if version == SCHEMA_VERSION:
        return
    if version == 0:
        raise ConfigError(f"{where} has no notifier schema yet: run `notify db init`")
    if version < SCHEMA_VERSION:
        raise ConfigError(
            f"{where} is at schema version {version}, this notify needs {SCHEMA_VERSION}: "
            "run `notify db migrate`"
        )
    raise ConfigError(
        f"{where} is at schema version {version}, newer than this notify knows "
        f"({SCHEMA_VERSION}): upgrade notify"
    )


def migrate(conn: psycopg.Connection[tuple[object, ...]]) -> tuple[int, int]:
    """Apply every migration the database lacks; ``(version before, version after)``.

    Concurrent callers are serialised by an advisory lock, so two machines running
    ``notify db migrate`` at once apply each step once.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(7406113)")
        conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_version (
                version integer PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now()
            )"""
        )
        before = current_version(conn)
        if before > SCHEMA_VERSION:
            raise ConfigError(
                f"the database is at schema version {before}, newer than this notify knows "
                f"({SCHEMA_VERSION}): upgrade notify"
            )
        for number, steps in enumerate(MIGRATIONS[before:], start=before + 1):
            for step in steps:
                conn.execute(step.encode())
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (number,))
    return before, SCHEMA_VERSION
