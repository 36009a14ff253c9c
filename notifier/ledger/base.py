"""What every store of the ledger offers: checked appends, reading, views, exports, anchors.

A store implements the few primitives marked abstract (append under its own lock, read in
order from a cursor, the head, the message and token stores, verify); everything else is
written once here.
"""

from __future__ import annotations

import abc
import base64
import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Literal, TextIO

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519

from . import query
from .chain import (
    EVENT,
    MAX_RECORD_BYTES,
    Clock,
    Fields,
    Record,
    canonical,
    format_head,
    joined,
    normalise_fields,
    pieces,
    pieces_hash,
    utc_iso,
)
from .evidence import Artifacts
from .keys import key_id
from .readmodel import ReadModel
from .records import Entry, check
from .timestamps import parse_timestamp_reply, timestamp_head, token_name
from .verify import VerifyReport, verify

__all__ = ["Ledger", "prepare", "LiveView"]

# the fields a record gets from the chain as it is sealed (``worker``: an intent's writer)
_SEALED = ("seq", "time", "event", "worker", "prev", "key_id")

Guard = Callable[[], bool]


class Ledger(abc.ABC):
    """The one writer and reader of a hash chain, whatever holds it."""

    def __init__(self, *, clock: Clock, signer: ed25519.Ed25519PrivateKey | None) -> None:
        self._clock = clock
        self._signer = signer
        self._key_id = key_id(signer.public_key()) if signer is not None else None

    # ---------------------------------------------------------------- primitives

    @abc.abstractmethod
    def _append_guarded(
        self, items: list[tuple[str, Record]], guards: list[Guard | None]
    ) -> list[Record | None]:
        """Write the items whose guard (called in order, under the store's lock) says yes;
        None for the others. A guard sees the chain as stored, no other writer able to add."""

    def _append_taken(
        self, take: Callable[[], tuple[list[tuple[str, Record]], list[Guard | None]]]
    ) -> list[Record | None]:
        """``_append_guarded`` of what ``take()`` gives, asked for as late as the store allows
        (once its lock is held, where taking then costs nothing)."""
        return self._append_guarded(*take())

    @abc.abstractmethod
    def follow(self, cursor: int = 0) -> Iterator[tuple[Record, int]]:
        """Each record after ``cursor`` (0: from the start) with the cursor just past it."""

    @abc.abstractmethod
    def head(self) -> tuple[int, str]:
        """``(record count, hash of the last record)``; ``(0, GENESIS)`` when empty."""

    @abc.abstractmethod
    def store_message(self, raw: bytes) -> str:
        """Keep the exact bytes of a message handed to a mail server; return their SHA-256."""

    def store_messages(self, raws: Sequence[bytes]) -> list[str]:
        """``store_message`` for each (a store may keep several at once for less)."""
        return [self.store_message(raw) for raw in raws]

    @abc.abstractmethod
    def load_message(self, digest: str) -> bytes:
        """The stored message with this digest; ``AuditError`` if missing or altered."""

    @abc.abstractmethod
    def message_digests(self) -> Iterator[str]:
        """The digest every stored message is filed under."""

    @abc.abstractmethod
    def _store_token(self, name: str, reply: bytes) -> Path | str:
        """Keep an RFC 3161 reply under ``name``; return where it went."""

    @abc.abstractmethod
    def alive(self, worker: str) -> bool:
        """Whether the process that wrote intents as ``worker`` is still running."""

    @abc.abstractmethod
    def _chain_source(self) -> Path | IO[bytes]:
        """The chain as JSON Lines, for ``verify``."""

    @abc.abstractmethod
    def _artifacts(self) -> Artifacts:
        """The messages, tokens and published head the chain names, for ``verify``."""

    @abc.abstractmethod
    def _intent_worker(self) -> str:
        """The worker id an intent is written under (the store may claim it first)."""

    def verify(
        self,
        *,
        head: tuple[int, str] | None = None,
        public_key: ed25519.Ed25519PublicKey | None = None,
        tsa_trust: Iterable[x509.Certificate] | None = None,
    ) -> VerifyReport:
        """Check the chain and everything it names (messages, tokens, published heads); the
        store's own key checks the signatures unless another is given."""
        if public_key is None and self._signer is not None:
            public_key = self._signer.public_key()
        return verify(
            self._chain_source(),
            head=head,
            public_key=public_key,
            tsa_trust=tsa_trust,
            artifacts=self._artifacts(),
        )

    def _seal(self, event: str, fields: Record, seq: int, prev: str) -> tuple[Record, str]:
        """The record as stored, numbered, timed, chained to ``prev``, hashed and (an outcome,
        when a key is set) signed; and its line. ``ValueError`` when the line is too long."""
        record: Record = {**fields, "seq": seq, "time": utc_iso(self._clock()), "event": event}
        if event == "intent" and record.get("worker") is None:
            record["worker"] = self._intent_worker()
        record["prev"] = prev
        signer = self._signer if event == "outcome" else None
        if signer is not None:
            record["key_id"] = self._key_id
        own = {k: record[k] for k in _SEALED if k in record}  # what the chain adds
        parts = {**(fields.parts if isinstance(fields, Fields) else pieces(fields)), **pieces(own)}
        record["hash"] = pieces_hash(parts)
        if signer is not None:
            signature = signer.sign(bytes.fromhex(record["hash"]))
            record["sig"] = base64.b64encode(signature).decode("ascii")
        parts.update(pieces({k: record[k] for k in ("hash", "sig") if k in record}))
        line = joined(parts)
        size = len(line.encode("utf-8")) + 1
        if size > MAX_RECORD_BYTES:
            raise ValueError(f"audit record too large ({size} bytes)")
        return record, line

    # ---------------------------------------------------------------- writing

    def append(self, event: str, /, **fields: object) -> Record:
        """Write one record and return it exactly as stored (with ``seq``, ``prev``, ``hash``).

        Raises ``ValueError`` for an unknown event kind, fields that do not fit its record
        class, reserved or secret-looking fields, or values JSON cannot hold; ``AuditError``
        when the store cannot be written; ``AuditIntegrityError`` when the last record is
        damaged (nothing is appended to a chain whose head cannot be trusted).
        """
        return self._append_checked([prepare(event, fields)])[0]

    def write(self, entry: Entry) -> Record:
        """Write a typed record; return it as stored."""
        return self.append(entry.event, **entry.fields())

    def append_many(self, entries: Iterable[tuple[str, Mapping[str, object]]]) -> list[Record]:
        """Write several records in order, together (one write and one sync).

        Each entry is ``(event, fields)`` and is checked as ``append`` checks it; nothing is
        written when any is refused. Returns the records as stored.
        """
        return self._append_checked([prepare(event, fields) for event, fields in entries])

    def _append_checked(self, items: list[tuple[str, Record]]) -> list[Record]:
        return [r for r in self._append_guarded(items, [None] * len(items)) if r is not None]

    async def timestamp(
        self,
        url: str,
        http: httpx.AsyncClient,
        *,
        timeout: float,  # noqa: ASYNC109 - one deadline for the whole TSA exchange
    ) -> tuple[Path | str, Record]:
        """Have the TSA at ``url`` timestamp the current head, keep the token, log an ``anchor``.

        Returns where the token went and the ``anchor`` record (itself the new head).
        """
        count, last = self.head()
        text = format_head(count, last)
        reply = await timestamp_head(url, text, http, timeout=timeout)
        token = parse_timestamp_reply(reply)
        name = token_name(count, last)
        where = self._store_token(name, reply)
        record = self.append(
            "anchor",
            head=text,
            tsa=url,
            token_file=name,
            token_sha256=hashlib.sha256(reply).hexdigest(),
            gen_time=token.gen_time,
        )
        return where, record

    # ---------------------------------------------------------------- reading

    def records(self) -> Iterator[Record]:
        """Every complete record in order, streamed."""
        for record, _cursor in self.follow():
            yield record

    def view(self, *, lean: bool = False) -> LiveView:
        """A read model of this ledger, brought up to date with ``refresh()``.

        ``lean``: only what sending asks (delivered, in doubt, suppressed, daily counts), not
        the cases, messages and timelines a review needs, so a million-finding log stays small.
        """
        return LiveView(self, lean=lean)

    def delivered_keys(self) -> set[tuple[str, str]]:
        """``(finding_key, recipient)`` for every outcome with status ``delivered``."""
        return ReadModel.of(self.records()).delivered

    def in_doubt(self) -> list[Record]:
        """Intent records with no outcome sharing their ``attempt_id``: a crash came between."""
        open_intents: dict[str, Record] = {}
        for record in self.records():
            attempt = record.get("attempt_id")
            if not isinstance(attempt, str):
                continue
            if record.get("event") == "intent":
                open_intents.setdefault(attempt, record)
            elif record.get("event") == "outcome":
                open_intents.pop(attempt, None)
        return list(open_intents.values())

    def find(self, message_id: str) -> list[Record]:
        """Every record about the message with this Message-ID (angle brackets optional)."""
        return query.find(self.records(), message_id)

    def select(
        self,
        ip: str | None = None,
        recipient: str | None = None,
        since: datetime | None = None,
        status: str | None = None,
        event: str | None = None,
    ) -> Iterator[Record]:
        """Records matching every given filter (``ip`` also matches a batch's ``ips``)."""
        return query.select(self.records(), ip, recipient, since, status, event)

    def export(
        self,
        fmt: Literal["csv", "json", "jsonl"],
        out: TextIO,
        *,
        ip: str | None = None,
        recipient: str | None = None,
        since: datetime | None = None,
        status: str | None = None,
        event: str | None = None,
    ) -> int:
        """Write the selected records to ``out`` as CSV, a JSON array or the chain's own JSON
        Lines (``jsonl``: with no filter, a file ``notify log verify`` checks offline)."""
        chosen = self.select(ip=ip, recipient=recipient, since=since, status=status, event=event)
        if fmt == "jsonl":
            count = 0
            for record in chosen:
                out.write(canonical(record) + "\n")
                count += 1
            return count
        return query.export(chosen, fmt, out)


def prepare(event: str, fields: Mapping[str, object]) -> tuple[str, Record]:
    """Check an event and its fields the way every write does; the fields in JSON form."""
    if not EVENT.fullmatch(event):
        raise ValueError(f"bad audit event name: {event!r}")
    plain = normalise_fields(fields)
    check(event, plain)
    return event, plain


class LiveView:
    """A :class:`ReadModel` of a ledger kept current: ``refresh()`` reads only what is new."""

    def __init__(self, ledger: Ledger, *, lean: bool = False) -> None:
        self.ledger = ledger
        self.model = ReadModel(lean=lean)
        self._cursor = 0

    def priors(self, finding_keys: Sequence[str], recipient: str) -> list[str | None]:
        """As ``ReadModel.priors``, but "in-flight" for a finding a live process is delivering
        right now (its intent has no outcome yet): that is not in doubt, only unfinished."""
        said = self.model.priors(finding_keys, recipient)
        for n, (key, known) in enumerate(zip(finding_keys, said, strict=True)):
            if known == "in-doubt" and any(
                i.worker and self.ledger.alive(i.worker)
                for i in self.model.open_for(key, recipient)
            ):
                said[n] = "in-flight"
        return said

    def refresh(self) -> ReadModel:
        for record, cursor in self.ledger.follow(self._cursor):
            self.model.add(record)
            self._cursor = cursor
        return self.model
