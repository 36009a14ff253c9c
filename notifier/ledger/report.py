"""What a verification found."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .chain import GENESIS, format_head

__all__ = ["Problem", "VerifyReport"]


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
