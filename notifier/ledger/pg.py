"""The PostgreSQL store: one chain, stored messages and tokens shared by every process.

Every append is one transaction that locks the single ``ledger_head`` row (``FOR UPDATE``),
reads the head, runs the callers' guards, inserts the new lines and moves the head: appends from
every machine are serialised on that row, and a guard (has another worker claimed this?) sees
the chain exactly as it will be extended. Each line is stored as the very JSON line the file
store would write, so ``export("jsonl")`` produces a file that verifies offline, and an edit
behind the tool's back (a changed line, a deleted row, a moved head) fails ``verify``.

Each process holds a session advisory lock named after its worker id for as long as it lives;
an intent whose worker still holds its lock is being delivered, not in doubt (``alive``).
"""

from __future__ import annotations

import hashlib
import re
import tempfile
import threading
import uuid
from collections.abc import Iterator
from typing import IO, Any

import psycopg
from cryptography.hazmat.primitives.asymmetric import ed25519

from ..errors import AuditError, AuditIntegrityError, ConfigError
from .base import Guard, Ledger
from .chain import (
    HEX64,
    Clock,
    LineError,
    Record,
    parse_line,
)
from .schema import SCHEMA_VERSION, check_version, current_version, migrate
from .timestamps import TOKEN_NAME

__all__ = ["PgLedger", "connect", "redact", "setup"]

Conn = psycopg.Connection[tuple[Any, ...]]


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def connect(url: str, *, check: bool = True) -> Conn:
    """A connection to ``url``; ``ConfigError`` (one line, exit 2) when it cannot be had."""
    where = f"the database {redact(url)}"
    try:
        conn: Conn = psycopg.connect(url, connect_timeout=5, autocommit=True)
    except (psycopg.Error, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot connect to {where}: {reason}") from None
    if check:
        try:
            check_version(conn, where)
        except BaseException:
            conn.close()
            raise
    return conn


def worker_lock_id(worker: str) -> int:
    return int.from_bytes(hashlib.sha256(worker.encode()).digest()[:8], "big", signed=True)


class PgLedger(Ledger):
    """The ledger in PostgreSQL (``[state] url``)."""

    def __init__(
        self, url: str, *, clock: Clock, signer: ed25519.Ed25519PrivateKey | None = None
    ) -> None:
        super().__init__(clock=clock, signer=signer)
        self.url = url
        self.where = f"the database {redact(url)}"
        self._write = connect(url)
        self._read = connect(url, check=False)
        self._locks = (threading.Lock(), threading.Lock())
        self.worker = uuid.uuid4().hex[:16]
        # held for the life of this process: others see its intents as being delivered
        self._write.execute("SELECT pg_advisory_lock(%s)", (worker_lock_id(self.worker),))

    def close(self) -> None:
        self._write.close()
        self._read.close()

    # ---------------------------------------------------------------- primitives

    def _append_guarded(
        self, items: list[tuple[str, Record]], guards: list[Guard | None]
    ) -> list[Record | None]:
        if not items:
            return []
        with self._locks[0]:
            try:
                return self._append_locked(items, guards)
            except psycopg.Error as exc:
                raise AuditError(f"cannot write the ledger in {self.where}: {exc}") from None

    def _append_locked(
        self, items: list[tuple[str, Record]], guards: list[Guard | None]
    ) -> list[Record | None]:
        conn = self._write
        with conn.transaction():
            row = conn.execute("SELECT seq, hash FROM ledger_head FOR UPDATE").fetchone()
            if row is None:
                raise AuditIntegrityError(f"{self.where} has lost its ledger head row", line=0)
            seq, prev = int(row[0]) + 1, str(row[1])
            keep = [guard is None or guard() for guard in guards]
            written: list[Record] = []
            rows: list[tuple[int, str]] = []
            for (event, fields), kept in zip(items, keep, strict=True):
                if not kept:
                    continue
                record, line = self._seal(event, fields, seq, prev)
                rows.append((seq, line))
                written.append(record)
                seq, prev = seq + 1, record["hash"]
            if rows:
                with conn.cursor() as cur:
                    cur.executemany("INSERT INTO ledger (seq, line) VALUES (%s, %s)", rows)
                conn.execute("UPDATE ledger_head SET seq = %s, hash = %s", (seq - 1, prev))
        records = iter(written)
        return [next(records) if kept else None for kept in keep]

    def _intent_worker(self) -> str:
        return self.worker

    def follow(self, cursor: int = 0) -> Iterator[tuple[Record, int]]:
        """Each record after sequence number ``cursor``, with its own number as the next."""
        for seq, line in self._lines(cursor):
            try:
                record = parse_line(line.encode("utf-8"))
            except LineError as exc:
                raise AuditIntegrityError(f"line {seq}: {exc.detail}", line=seq) from None
            yield record, seq

    def _lines(self, after: int = 0, batch: int = 2000) -> Iterator[tuple[int, str]]:
        while True:
            with self._locks[1]:
                try:
                    rows = self._read.execute(
                        "SELECT seq, line FROM ledger WHERE seq > %s ORDER BY seq LIMIT %s",
                        (after, batch),
                    ).fetchall()
                except psycopg.Error as exc:
                    raise AuditError(f"cannot read the ledger in {self.where}: {exc}") from None
            for seq, line in rows:
                yield int(seq), str(line)
                after = int(seq)
            if len(rows) < batch:
                return

    def head(self) -> tuple[int, str]:
        row = self._query("SELECT seq, hash FROM ledger_head")
        if not row:
            raise AuditIntegrityError(f"{self.where} has lost its ledger head row", line=0)
        return int(row[0][0]), str(row[0][1])

    def _query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._locks[1]:
            try:
                return self._read.execute(sql.encode(), params).fetchall()
            except psycopg.Error as exc:
                raise AuditError(f"cannot read {self.where}: {exc}") from None

    def alive(self, worker: str) -> bool:
        """Whether the process that wrote intents as ``worker`` is still running."""
        if worker == self.worker:
            return True
        key = worker_lock_id(worker)
        got = self._query("SELECT pg_try_advisory_lock(%s)", (key,))
        if got and got[0][0]:
            self._query("SELECT pg_advisory_unlock(%s)", (key,))
            return False
        return True

    def store_message(self, raw: bytes) -> str:
        digest = hashlib.sha256(raw).hexdigest()
        self._keep(
            "INSERT INTO messages (digest, raw) VALUES (%s, %s) ON CONFLICT (digest) DO NOTHING",
            (digest, raw),
            f"cannot store message {digest}",
        )
        return digest

    def _keep(self, sql: str, params: tuple[object, ...], failure: str) -> None:
        """Run one write beside the chain (a message, a token); ``AuditError`` if it fails."""
        with self._locks[1]:
            try:
                self._read.execute(sql, params)
            except psycopg.Error as exc:
                raise AuditError(f"{failure}: {exc}") from None

    def load_message(self, digest: str) -> bytes:
        if not HEX64.fullmatch(digest):
            raise AuditError(f"not a message digest: {digest!r}")
        raw = self.message_bytes(digest)
        if raw is None:
            raise AuditError(f"stored message {digest} is missing")
        if hashlib.sha256(raw).hexdigest() != digest:
            raise AuditError(f"stored message {digest} was altered: its bytes no longer match")
        return raw

    def message_digests(self) -> Iterator[str]:
        for (digest,) in self._query("SELECT digest FROM messages ORDER BY digest"):
            yield str(digest)

    def message_bytes(self, digest: str) -> bytes | None:
        rows = self._query("SELECT raw FROM messages WHERE digest = %s", (digest,))
        return bytes(rows[0][0]) if rows else None

    def _store_token(self, name: str, reply: bytes) -> str:
        self._keep(
            "INSERT INTO tokens (name, reply) VALUES (%s, %s) "
            "ON CONFLICT (name) DO UPDATE SET reply = excluded.reply",
            (name, reply),
            "cannot store the timestamp token",
        )
        return f"{self.where}: {name}"

    def token_names(self) -> list[tuple[int, str, str]]:
        names = []
        for (name,) in self._query("SELECT name FROM tokens ORDER BY name"):
            match = TOKEN_NAME.fullmatch(str(name))
            if match and int(match.group(1)) > 0:
                names.append((int(match.group(1)), match.group(2), str(name)))
        return names

    def token_bytes(self, name: str) -> bytes | None:
        rows = self._query("SELECT reply FROM tokens WHERE name = %s", (name,))
        return bytes(rows[0][0]) if rows else None

    def head_mark(self) -> tuple[int, str] | None:
        count, digest = self.head()
        return (count, digest) if count else None

    def _chain_source(self) -> IO[bytes]:
        """The chain as stored, line for line, checked as the file store's is."""
        spool = tempfile.SpooledTemporaryFile(max_size=64 << 20)  # noqa: SIM115
        for _seq, line in self._lines():
            spool.write(line.encode("utf-8") + b"\n")
        spool.seek(0)
        return spool

    def _artifacts(self) -> PgLedger:
        return self


def setup(url: str, *, initial: bool) -> str:
    """``notify db init`` (``initial``) or ``migrate``: one line saying what was done."""
    conn = connect(url, check=False)
    where = f"the database {redact(url)}"
    try:
        before = current_version(conn)
        if initial and before:
            if before < SCHEMA_VERSION:
                raise ConfigError(
                    f"{where} already has a notifier schema (version {before}): "
                    "run `notify db migrate` to upgrade it"
                )
            if before > SCHEMA_VERSION:
                check_version(conn, where)
            return f"{where} is already initialised (schema version {before})"
        if not initial and not before:
            raise ConfigError(f"{where} has no notifier schema yet: run `notify db init`")
        try:
            old, new = migrate(conn)
        except psycopg.Error as exc:
            raise ConfigError(f"cannot create the schema in {where}: {exc}") from None
    finally:
        conn.close()
    if old == new:
        return f"{where} is up to date (schema version {new})"
    return f"{where}: schema version {old} -> {new}"
