"""Checking a chain end to end: hashes, links, signatures, stored messages, heads, tokens."""

from __future__ import annotations

import base64
import json
import os
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from ..errors import AuditError
from .chain import GENESIS, HEX64, MAX_RECORD_BYTES, LineError, Record, parse_line
from .evidence import Artifacts, FileArtifacts, collect_claims, cross_check
from .fileio import iter_lines
from .keys import key_id
from .report import Problem, VerifyReport

__all__ = ["Problem", "VerifyReport", "verify"]

_LOOKAHEAD = 256
_HASH_WINDOW = 10_000


def verify(
    path: str | os.PathLike[str] | IO[bytes] | None,
    *,
    head: tuple[int, str] | None = None,
    public_key: ed25519.Ed25519PublicKey | None = None,
    messages_dir: str | os.PathLike[str] | None = None,
    timestamps_dir: str | os.PathLike[str] | None = None,
    tsa_trust: Iterable[x509.Certificate] | None = None,
    artifacts: Artifacts | None = None,
) -> VerifyReport:
    """Check the log end to end without writing anything.

    Recomputes every line's hash, ``prev`` link and ``seq``, and names the first bad line and
    why. ``head=(N, HASH)`` (committed earlier) proves the log still holds that prefix. With
    ``public_key`` every signature must verify. With the store's artifacts (``messages_dir``
    and ``timestamps_dir`` of a file store, or ``artifacts``), the log must account for
    everything the tool stored or published: every message handed over is stored intact, every
    stored message has its intent line, the log holds every head a stored message quoted in
    ``X-Notifier-Log-Head`` or the store last recorded, every anchor's token is kept, and every
    ``<N>-<hash16>.tsr`` token is a validly signed timestamp over line N's head (with
    ``tsa_trust``, signed by one of those certificates or a certificate they issued).

    ``path`` may be an open binary file (an export read from a database or a pipe). Raises only
    ``AuditError`` (the file could not be read); everything wrong is a :class:`Problem`.
    """
    if artifacts is None and (messages_dir is not None or timestamps_dir is not None):
        mark = Path(f"{os.fspath(path)}.head") if isinstance(path, str | os.PathLike) else None
        artifacts = FileArtifacts(
            Path(messages_dir) if messages_dir is not None else None,
            Path(timestamps_dir) if timestamps_dir is not None else None,
            mark,
        )
    report = VerifyReport()
    claims = collect_claims(artifacts, head)
    wanted = {claim.count for claim in claims.heads} | {n for n, _, _ in claims.tokens}
    captured: dict[int, str] = {}
    checker = _RecordChecker(report, public_key)
    broken_at: int | None = None
    handle: IO[bytes] | None
    if path is None or hasattr(path, "read"):
        handle = path  # type: ignore[assignment]
    else:
        try:
            handle = open(path, "rb")  # noqa: SIM115
        except FileNotFoundError:
            handle = None
        except OSError as exc:
            raise AuditError(f"cannot read {path}: {exc.strerror}") from None
    if handle is not None:
        try:
            with handle:
                broken_at = _verify_chain(handle, report, checker, wanted, captured)
        except OSError as exc:
            raise AuditError(f"cannot read {path}: {exc.strerror}") from None
    trust = list(tsa_trust) if tsa_trust is not None else None
    cross_check(report, claims, captured, broken_at, checker, artifacts, trust)
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
    """Per-record checks beyond the chain: signatures; notes the digests records name."""

    def __init__(self, report: VerifyReport, public_key: ed25519.Ed25519PublicKey | None) -> None:
        self.report = report
        self.public_key = public_key
        self.key_id = key_id(public_key) if public_key is not None else None
        # digest -> (first line naming it, whether an outcome says it was handed over)
        self.digests: dict[str, tuple[int, bool]] = {}
        self.anchors: list[tuple[int, str]] = []  # (line, token file)

    def check(self, line: int, record: Record) -> None:
        self._signature(line, record)
        event = record["event"]
        if event in ("outcome", "intent"):
            digest = record.get("digest")
            if digest:
                if not isinstance(digest, str) or not HEX64.fullmatch(digest):
                    self._add(line, "message", "the recorded digest is not a SHA-256")
                    return
                first, sent = self.digests.get(digest, (line, False))
                self.digests[digest] = (first, sent or event == "outcome")
        elif event == "anchor" and isinstance(record.get("token_file"), str):
            self.anchors.append((line, record["token_file"]))

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

    def _add(self, line: int, kind: str, detail: str) -> None:
        self.report.problems.append(Problem(line, kind, detail))
