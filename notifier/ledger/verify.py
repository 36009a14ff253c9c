"""Checking a chain end to end: hashes, links, signatures, stored messages, heads, tokens."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from ..errors import AuditError
from .chain import GENESIS, HEX64, MAX_RECORD_BYTES, LineError, Record, format_head, parse_line
from .fileio import file_sha256, iter_lines
from .keys import key_id
from .timestamps import OID_SHA256, parse_timestamp_reply, token_claims

__all__ = ["Problem", "VerifyReport", "verify"]

_LOOKAHEAD = 256
_HASH_WINDOW = 10_000


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the log: the (1-based) line, a kind and a plain sentence.

    Kinds: ``torn``, ``not-json``, ``malformed``, ``edited``, ``deleted``, ``inserted``,
    ``reordered``, ``truncated``, ``head-mismatch``, ``signature``, ``message``, ``timestamp``.
    """

    line: int
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.kind}: {self.detail}"


@dataclass(slots=True)
class VerifyReport:
    """What :func:`verify` found. ``ok`` when there is no problem at all."""

    lines: int = 0  # complete lines in the file
    verified: int = 0  # lines whose chain verified, from the top
    head: tuple[int, str] = (0, GENESIS)  # the last verified line's (number, hash)
    problems: list[Problem] = field(default_factory=list)
    signatures: int = 0  # signatures checked and valid
    messages: int = 0  # stored messages checked and intact
    timestamps: list[tuple[int, datetime]] = field(default_factory=list)  # (line, genTime)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad(self) -> int | None:
        """The number of the first bad line, or None when the log is intact."""
        return min((p.line for p in self.problems), default=None)

    @property
    def first_problem(self) -> Problem | None:
        if not self.problems:
            return None
        return min(self.problems, key=lambda p: p.line)

    def summary(self) -> str:
        """One sentence for people."""
        if self.ok:
            return f"intact: {self.lines} lines, head {format_head(*self.head)}"
        first = self.first_problem
        assert first is not None
        more = len(self.problems) - 1
        tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        return f"first bad line {first.line}: {first.kind}: {first.detail}{tail}"


def verify(
    path: str | os.PathLike[str],
    *,
    head: tuple[int, str] | None = None,
    public_key: ed25519.Ed25519PublicKey | None = None,
    messages_dir: str | os.PathLike[str] | None = None,
    timestamps_dir: str | os.PathLike[str] | None = None,
    tsa_trust: Iterable[x509.Certificate] | None = None,
) -> VerifyReport:
    """Check the log end to end without writing anything.

    Recomputes every line's hash, ``prev`` link and ``seq``, and names the first bad line and
    why. ``head=(N, HASH)`` (committed earlier) proves the log still holds that prefix. With
    ``public_key`` every signature must verify; with ``messages_dir`` every recorded digest must
    match its stored message; with ``timestamps_dir`` every ``<N>-<hash16>.tsr`` token must be a
    validly signed timestamp over line N's head (and, with ``tsa_trust``, signed by one of those
    certificates or a certificate they issued).

    Raises only ``AuditError`` (the file could not be read); everything wrong inside the log is
    a :class:`Problem` in the report.
    """
    report = VerifyReport()
    tokens = token_claims(Path(timestamps_dir)) if timestamps_dir is not None else []
    wanted = {n for n, _, _ in tokens} | ({head[0]} if head is not None else set())
    captured: dict[int, str] = {}
    checker = _RecordChecker(
        report, public_key, Path(messages_dir) if messages_dir is not None else None
    )
    try:
        handle = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        handle = None
    except OSError as exc:
        raise AuditError(f"cannot read {path}: {exc.strerror}") from None
    broken_at: int | None = None
    if handle is not None:
        try:
            with handle:
                broken_at = _verify_chain(handle, report, checker, wanted, captured)
        except OSError as exc:
            raise AuditError(f"cannot read {path}: {exc.strerror}") from None
    if head is not None:
        _check_head(report, head, captured, broken_at)
    trust = list(tsa_trust) if tsa_trust is not None else None
    for count, prefix, token_path in tokens:
        _check_token(report, count, prefix, token_path, captured, broken_at, trust)
    return report


def _verify_chain(
    handle: IO[bytes],
    report: VerifyReport,
    checker: _RecordChecker,
    wanted: set[int],
    captured: dict[int, str],
) -> int | None:
    """Walk the lines; return the number of the first line that broke the chain, if any."""
    hashes: dict[int, str] = {}
    window: deque[int] = deque()
    prev = GENESIS
    lines = iter_lines(handle)
    position = 0
    for raw in lines:
        position += 1
        if not raw.endswith(b"\n"):
            if len(raw) > MAX_RECORD_BYTES:
                report.problems.append(
                    Problem(position, "malformed", f"longer than {MAX_RECORD_BYTES} bytes")
                )
                report.lines = position - 1 + _count_rest(handle, raw)
            else:
                report.lines = position - 1
                report.problems.append(
                    Problem(
                        position,
                        "torn",
                        f"{len(raw)} bytes without a newline at the end: a write cut short by a "
                        "crash (the next append moves them aside)",
                    )
                )
            return position
        try:
            record = parse_line(raw[:-1])
        except LineError as exc:
            report.problems.append(Problem(position, exc.kind, exc.detail))
            report.lines = position + _count_rest(handle, b"")
            return position
        if record["seq"] != position or record["prev"] != prev:
            ahead = _lookahead_seqs(lines)
            report.problems.append(_classify(position, record, prev, hashes, ahead))
            report.lines = position + len(ahead.consumed) + _count_rest(handle, b"")
            return position
        checker.check(position, record)
        prev = record["hash"]
        hashes[position] = prev
        window.append(position)
        if len(window) > _HASH_WINDOW:
            hashes.pop(window.popleft(), None)
        if position in wanted:
            captured[position] = prev
        report.verified = position
        report.head = (position, prev)
    report.lines = position
    return None


class _Ahead:
    def __init__(self) -> None:
        self.consumed: list[bytes] = []
        self.seqs: list[int] = []


def _lookahead_seqs(lines: Iterator[bytes]) -> _Ahead:
    ahead = _Ahead()
    for raw in lines:
        if not raw.endswith(b"\n"):
            break
        ahead.consumed.append(raw)
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):
            value = None
        if isinstance(value, dict) and isinstance(value.get("seq"), int):
            ahead.seqs.append(value["seq"])
        if len(ahead.consumed) >= _LOOKAHEAD:
            break
    return ahead


def _count_rest(handle: IO[bytes], pending: bytes) -> int:
    """Complete lines left in the file (``pending``: bytes already read of the current line)."""
    count = pending.count(b"\n")
    for block in iter(lambda: handle.read(1 << 20), b""):
        count += block.count(b"\n")
    return count


def _classify(
    position: int, record: Record, prev: str, hashes: dict[int, str], ahead: _Ahead
) -> Problem:
    """Say what most likely happened at the first line whose ``seq`` or ``prev`` is wrong."""
    seq: int = record["seq"]
    if seq == position:
        if position == 1:
            return Problem(1, "edited", "the first line does not start the chain")
        return Problem(
            position - 1,
            "edited",
            f"line {position} links to a different version of line {position - 1}: "
            f"line {position - 1} was changed and re-hashed",
        )
    if seq > position:
        if any(position <= s < seq for s in ahead.seqs):
            return Problem(
                position,
                "reordered",
                f"line {position} holds record {seq}; earlier records come after it",
            )
        missing = seq - position
        span = f"record {position}" if missing == 1 else f"records {position}-{seq - 1}"
        return Problem(
            position, "deleted", f"{missing} line{'s' if missing > 1 else ''} removed ({span})"
        )
    if hashes.get(seq) == record["hash"]:
        return Problem(position, "inserted", f"line {position} is a copy of line {seq}")
    links_to = GENESIS if seq == 1 else hashes.get(seq - 1)
    if links_to is not None and record["prev"] == links_to:
        span = f"line {seq}" if seq == position - 1 else f"lines {seq}-{position - 1}"
        return Problem(
            seq,
            "inserted",
            f"{span} {'was' if seq == position - 1 else 'were'} inserted: line {position} "
            f"(record {seq}) links to line {seq - 1}",
        )
    return Problem(
        position, "inserted", f"line {position} (record {seq}) does not belong in the chain here"
    )


class _RecordChecker:
    """Per-record checks beyond the chain: signatures and stored messages."""

    def __init__(
        self,
        report: VerifyReport,
        public_key: ed25519.Ed25519PublicKey | None,
        messages_dir: Path | None,
    ) -> None:
        self.report = report
        self.public_key = public_key
        self.key_id = key_id(public_key) if public_key is not None else None
        self.messages_dir = messages_dir
        self._seen: dict[str, str | None] = {}

    def check(self, line: int, record: Record) -> None:
        self._signature(line, record)
        if self.messages_dir is not None and record["event"] in ("outcome", "intent"):
            digest = record.get("digest")
            if digest:
                self._message(line, digest)

    def _signature(self, line: int, record: Record) -> None:
        if "key_id" in record and "sig" not in record:
            self._add(line, "signature", "the record was signed but its signature was removed")
            return
        if "sig" not in record or self.public_key is None:
            return
        if record.get("key_id") != self.key_id:
            self._add(line, "signature", f"signed by another key ({record.get('key_id')})")
            return
        try:
            signature = base64.b64decode(record["sig"], validate=True)
            self.public_key.verify(signature, bytes.fromhex(record["hash"]))
        except (ValueError, InvalidSignature):
            self._add(line, "signature", "the signature does not verify: forged or altered")
            return
        self.report.signatures += 1

    def _message(self, line: int, digest: object) -> None:
        if not isinstance(digest, str) or not HEX64.fullmatch(digest):
            self._add(line, "message", "the recorded digest is not a SHA-256")
            return
        if digest not in self._seen:
            assert self.messages_dir is not None
            target = self.messages_dir / f"{digest}.eml"
            try:
                actual = file_sha256(target)
            except FileNotFoundError:
                self._seen[digest] = f"stored message {digest[:16]}... is missing"
            except OSError as exc:
                self._seen[digest] = f"stored message {digest[:16]}... unreadable: {exc.strerror}"
            else:
                self._seen[digest] = (
                    None
                    if actual == digest
                    else f"stored message {digest[:16]}... was altered (its bytes hash differently)"
                )
            if self._seen[digest] is None:
                self.report.messages += 1
        problem = self._seen[digest]
        if problem is not None:
            self._add(line, "message", problem)

    def _add(self, line: int, kind: str, detail: str) -> None:
        self.report.problems.append(Problem(line, kind, detail))


def _check_head(
    report: VerifyReport, head: tuple[int, str], captured: dict[int, str], broken_at: int | None
) -> None:
    count, digest = head
    if count == 0:
        return
    if broken_at is not None and broken_at <= count:
        return  # the break is already the first problem
    if count > report.lines:
        report.problems.append(
            Problem(
                report.lines + 1,
                "truncated",
                f"the log has {report.lines} lines but head {format_head(count, digest)} "
                "was committed: lines were cut off the end",
            )
        )
    elif captured.get(count) != digest.lower():
        report.problems.append(
            Problem(
                count,
                "head-mismatch",
                f"line {count}'s hash differs from the committed head "
                f"{count}:{digest[:16]}...: the log was rewritten",
            )
        )


def _check_token(
    report: VerifyReport,
    count: int,
    prefix: str,
    path: Path,
    captured: dict[int, str],
    broken_at: int | None,
    trust: list[x509.Certificate] | None,
) -> None:
    if broken_at is not None and broken_at <= count:
        return
    if count > report.lines:
        report.problems.append(
            Problem(
                report.lines + 1,
                "truncated",
                f"timestamp {path.name} covers line {count} but the log has {report.lines} lines",
            )
        )
        return
    full = captured.get(count, "")
    if not full.startswith(prefix):
        report.problems.append(
            Problem(count, "timestamp", f"{path.name} was issued for another version of it")
        )
        return
    try:
        token = parse_timestamp_reply(path.read_bytes())
    except OSError as exc:
        report.problems.append(Problem(count, "timestamp", f"{path.name}: {exc.strerror}"))
        return
    except AuditError as exc:
        report.problems.append(Problem(count, "timestamp", f"{path.name}: {exc}"))
        return
    expected = hashlib.sha256(format_head(count, full).encode("utf-8")).digest()
    if token.hash_algorithm != str(OID_SHA256) or token.imprint != expected:
        report.problems.append(
            Problem(count, "timestamp", f"{path.name} does not timestamp the head of line {count}")
        )
        return
    if trust is not None and not _trusted(token.signer, trust, token.gen_time):
        report.problems.append(
            Problem(count, "timestamp", f"{path.name} is signed by an untrusted TSA certificate")
        )
        return
    report.timestamps.append((count, token.gen_time))


def _trusted(cert: x509.Certificate, trust: list[x509.Certificate], when: datetime) -> bool:
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        return False
    for anchor in trust:
        if cert == anchor:
            return True
        try:
            cert.verify_directly_issued_by(anchor)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False
