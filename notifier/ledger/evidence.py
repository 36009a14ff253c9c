"""Completeness: the chain checked against everything the tool stored or published.

A chain proves its own lines consistent, not that none were cut off the end or that a forger did
not re-compute every hash. What the tool left outside the chain does: the head each message
quoted in ``X-Notifier-Log-Head`` (kept in the message store, and in the recipients' mailboxes),
the head the store records after every append, the RFC 3161 tokens over heads, the anchor
records naming those tokens, and the stored messages, each of which an intent line must name.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cryptography import x509

from ..errors import AuditError
from .chain import HEX64, format_head
from .report import Problem, VerifyReport
from .timestamps import OID_SHA256, parse_timestamp_reply, token_claims, trusted

if TYPE_CHECKING:
    from .verify import _RecordChecker

__all__ = ["Artifacts", "Claims", "FileArtifacts", "HeadClaim", "collect_claims", "cross_check"]

_HEAD_HEADER = re.compile(
    rb"^X-Notifier-Log-Head:[ \t]*(?:\r?\n[ \t]+)?(\d{1,12}):([0-9a-fA-F]{64})[ \t]*\r?$",
    re.M | re.I,
)
HEAD_MARK_WIDTH = 20  # the head mark is "<count, zero-padded>:<hash>\n", always one size


class Artifacts(Protocol):
    """What a store keeps beside its chain."""

    def message_digests(self) -> Iterable[str]: ...

    def message_bytes(self, digest: str) -> bytes | None:
        """The stored bytes, or None when there is no such message."""

    def token_names(self) -> list[tuple[int, str, str]]:
        """``(N, hash prefix, name)`` of every kept time-stamp token."""

    def token_bytes(self, name: str) -> bytes | None: ...

    def head_mark(self) -> tuple[int, str] | None:
        """The head the store recorded after its last append, if it keeps one."""


def format_head_mark(count: int, digest: str) -> bytes:
    return f"{count:0{HEAD_MARK_WIDTH}d}:{digest}\n".encode("ascii")


def parse_head_mark(data: bytes) -> tuple[int, str] | None:
    count, sep, digest = data.decode("ascii", "replace").strip().partition(":")
    if not sep or not count.isdigit() or not HEX64.fullmatch(digest):
        return None
    return int(count), digest


class FileArtifacts:
    """The file store's folders (either may be absent from a copy being checked)."""

    def __init__(
        self, messages: Path | None, timestamps: Path | None, head_file: Path | None = None
    ) -> None:
        self.messages = messages
        self.timestamps = timestamps
        self.head_file = head_file

    def message_digests(self) -> Iterable[str]:
        if self.messages is None:
            return []
        try:
            names = sorted(p.name for p in self.messages.iterdir())
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise AuditError(f"cannot read {self.messages}: {exc.strerror}") from None
        return [n[:-4] for n in names if n.endswith(".eml") and HEX64.fullmatch(n[:-4])]

    def message_bytes(self, digest: str) -> bytes | None:
        return _read(self.messages / f"{digest}.eml") if self.messages is not None else None

    def token_names(self) -> list[tuple[int, str, str]]:
        if self.timestamps is None:
            return []
        return [(n, prefix, path.name) for n, prefix, path in token_claims(self.timestamps)]

    def token_bytes(self, name: str) -> bytes | None:
        return _read(self.timestamps / name) if self.timestamps is not None else None

    def head_mark(self) -> tuple[int, str] | None:
        data = _read(self.head_file) if self.head_file is not None else None
        return parse_head_mark(data) if data else None


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AuditError(f"cannot read {path}: {exc.strerror}") from None


@dataclass(frozen=True, slots=True)
class HeadClaim:
    count: int
    digest: str
    source: str  # says where the head was published, for the problem's sentence


@dataclass(slots=True)
class Claims:
    heads: list[HeadClaim] = field(default_factory=list)
    tokens: list[tuple[int, str, str]] = field(default_factory=list)
    stored: dict[str, str] = field(default_factory=dict)  # digest -> SHA-256 of its bytes


def collect_claims(artifacts: Artifacts | None, head: tuple[int, str] | None) -> Claims:
    """Read what the store kept: stored messages (and the heads they quote), marks, tokens."""
    claims = Claims()
    if head is not None and head[0] > 0:
        claims.heads.append(HeadClaim(head[0], head[1].lower(), "the committed head"))
    if artifacts is None:
        return claims
    mark = artifacts.head_mark()
    if mark is not None and mark[0] > 0:
        claims.heads.append(HeadClaim(*mark, "the head the store recorded after its last append"))
    for digest in artifacts.message_digests():
        raw = artifacts.message_bytes(digest)
        if raw is None:
            continue
        claims.stored[digest] = hashlib.sha256(raw).hexdigest()
        end = raw.find(b"\n\n")
        crlf = raw.find(b"\r\n\r\n")
        cut = min(i for i in (end, crlf, len(raw)) if i >= 0)
        found = _HEAD_HEADER.search(raw[: min(cut, 1 << 16)])
        if found is not None and int(found.group(1)) > 0:
            source = f"stored message {digest[:16]}... quoted it in X-Notifier-Log-Head"
            claims.heads.append(
                HeadClaim(int(found.group(1)), found.group(2).decode().lower(), source)
            )
    claims.tokens = artifacts.token_names()
    return claims


def cross_check(
    report: VerifyReport,
    claims: Claims,
    captured: dict[int, str],
    broken_at: int | None,
    checker: _RecordChecker,
    artifacts: Artifacts | None,
    trust: list[x509.Certificate] | None,
) -> None:
    """Add a problem for everything published or stored that the chain does not account for."""
    for claim in sorted(claims.heads, key=lambda c: -c.count):
        _check_head(report, claim, captured, broken_at)
    if artifacts is not None:
        _check_messages(report, claims, checker, broken_at)
        names = {name for _, _, name in claims.tokens}
        for line, name in checker.anchors:
            if name not in names:
                report.problems.append(
                    Problem(line, "timestamp", f"the token {name} this anchor names is missing")
                )
    for count, prefix, name in claims.tokens:
        _check_token(report, count, prefix, name, artifacts, captured, broken_at, trust)


def _check_head(
    report: VerifyReport, claim: HeadClaim, captured: dict[int, str], broken_at: int | None
) -> None:
    count, digest = claim.count, claim.digest
    if broken_at is not None and broken_at <= count:
        return  # the break is already the first problem
    if count > report.lines:
        report.problems.append(
            Problem(
                report.lines + 1,
                "truncated",
                f"the log has {report.lines} lines but {claim.source}: "
                f"{format_head(count, digest[:16])}...: lines {report.lines + 1}-{count} "
                "were cut off the end",
            )
        )
    elif captured.get(count) != digest:
        report.problems.append(
            Problem(
                count,
                "head-mismatch",
                f"line {count}'s hash differs from the head {count}:{digest[:16]}... that "
                f"{claim.source}: the log was rewritten",
            )
        )


def _check_messages(
    report: VerifyReport, claims: Claims, checker: _RecordChecker, broken_at: int | None
) -> None:
    for digest, (line, handed_over) in checker.digests.items():
        actual = claims.stored.get(digest)
        if actual is None:
            # an intent without outcome whose message was never stored was never sent
            if handed_over:
                report.problems.append(
                    Problem(line, "message", f"stored message {digest[:16]}... is missing")
                )
        elif actual != digest:
            report.problems.append(
                Problem(
                    line,
                    "message",
                    f"stored message {digest[:16]}... was altered (its bytes hash differently)",
                )
            )
        else:
            report.messages += 1
    if broken_at is not None:
        return  # lines after the break were not read: what they name is unknown
    for digest in claims.stored:
        if digest not in checker.digests:
            report.problems.append(
                Problem(
                    report.lines + 1,
                    "unaccounted",
                    f"stored message {digest[:16]}... has no intent line: the records that "
                    "named it were removed",
                )
            )


def _check_token(
    report: VerifyReport,
    count: int,
    prefix: str,
    name: str,
    artifacts: Artifacts | None,
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
                f"timestamp {name} covers line {count} but the log has {report.lines} lines",
            )
        )
        return
    full = captured.get(count, "")
    if not full.startswith(prefix):
        report.problems.append(
            Problem(count, "timestamp", f"{name} was issued for another version of it")
        )
        return
    data = artifacts.token_bytes(name) if artifacts is not None else None
    if data is None:
        report.problems.append(Problem(count, "timestamp", f"{name}: missing"))
        return
    try:
        token = parse_timestamp_reply(data)
    except AuditError as exc:
        report.problems.append(Problem(count, "timestamp", f"{name}: {exc}"))
        return
    expected = hashlib.sha256(format_head(count, full).encode("utf-8")).digest()
    if token.hash_algorithm != OID_SHA256 or token.imprint != expected:
        report.problems.append(
            Problem(count, "timestamp", f"{name} does not timestamp the head of line {count}")
        )
        return
    if trust is not None and not trusted(token, trust):
        report.problems.append(
            Problem(count, "timestamp", f"{name} is signed by an untrusted TSA certificate")
        )
        return
    report.timestamps.append((count, token.gen_time))
