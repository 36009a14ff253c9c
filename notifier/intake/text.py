"""Plain address lists and CSV (Shadowserver-style columns, ZMap output)."""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Iterable, Iterator, Mapping

from ..models import Finding, IPAddress
from .base import (
    InputItem,
    InputProblem,
    _Bad,
    _clean,
    _Extras,
    _ip,
    _Line,
    _port,
    _scalar,
    _shown,
    _time,
)
from .generic import CsvRows
from .lines import _IP_KEYS, _delimiter, _key, _too_long

# --------------------------------------------------------------------------- plain and CSV

__all__: list[str] = []  # internal: the package (notifier.intake) is the surface

_INLINE_COMMENT = re.compile(r"\s#.*\Z", re.DOTALL)
_WHITESPACE = re.compile(r"\s")


def _plain_address(token: str) -> tuple[IPAddress, int | None]:
    if token.startswith("["):
        host, _, rest = token[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise _Bad(f"not an address: {_shown(token)}")
        return _ip(host), _port(rest[1:]) if rest else None
    if token.count(":") == 1:
        host, _, port = token.partition(":")
        return _ip(host), _port(port)
    return _ip(token), None


def _plain(lines: Iterator[_Line], default: str) -> Iterator[InputItem]:
    """One address a line, ``ip:port`` or ``[v6]:port`` allowed, ``#`` starting a comment."""
    for lineno, text in lines:
        if text is None:
            yield _too_long(lineno)
            continue
        body = (_INLINE_COMMENT.sub("", text) if "#" in text else text).strip()
        if not body or body.startswith("#"):
            continue
        if _WHITESPACE.search(body):
            yield InputProblem(lineno, f"expected one address a line: {_shown(body)}")
            continue
        try:
            ip, port = _plain_address(body)
        except _Bad as exc:
            yield InputProblem(lineno, str(exc))
            continue
        yield Finding(ip=ip, text=default, port=port)


class _CsvFeed:
    """Lines for ``csv.reader``; too-long lines are left out and reported beside the rows."""

    def __init__(self, lines: Iterator[_Line]) -> None:
        self._lines = lines
        self.lineno = 0
        self.problems: list[InputProblem] = []

    def __iter__(self) -> _CsvFeed:
        return self

    def __next__(self) -> str:
        for lineno, text in self._lines:
            self.lineno = lineno
            if text is None:
                self.problems.append(_too_long(lineno))
                continue
            return text
        raise StopIteration

    def drain(self) -> Iterator[InputProblem]:
        yield from self.problems
        self.problems.clear()


def _zmap_row(record: Mapping[str, object], lineno: int, default: str) -> list[InputItem]:
    # zmap reports from the responder's side: saddr/sport are the target's address and port,
    # daddr/dport are the scanner's own
    if _scalar(record.get("success")) == "0" or _scalar(record.get("repeat")) == "1":
        return []
    ip = _ip(record.get("saddr"))
    port = _port(_scalar(record.get("sport")))
    observed = _time(record.get("timestamp_str")) or _time(record.get("timestamp_ts"))
    extras = _Extras()
    extras.add("classification", record.get("classification"))
    return [Finding(ip=ip, text=default, port=port, observed_at=observed, extra=extras.pairs())]


def _csv(lines: Iterator[_Line], default: str, *, zmap: bool = False) -> Iterator[InputItem]:
    feed = _CsvFeed(lines)
    first = ""
    for line in feed:
        if line.strip() and not line.lstrip().startswith("#"):
            first = line
            break
    yield from feed.drain()
    if not first:
        return
    delimiter = _delimiter(first)
    header_line = feed.lineno
    try:
        fields = next(csv.reader([first], delimiter=delimiter), [])
    except csv.Error as exc:
        yield InputProblem(header_line, f"unreadable CSV header ({exc})")
        return
    header = [_key(f) for f in fields]
    rows: Iterable[list[str]] = csv.reader(feed, delimiter=delimiter)
    if zmap and "saddr" not in header:
        # a bare list of responding addresses, which zmap writes without a header
        header = ["saddr"]
        rows = itertools.chain([fields], rows)
    elif not zmap and not any(n in _IP_KEYS for n in header):
        yield InputProblem(header_line, "CSV header names no address column (such as ip)")
        return
    generic = None if zmap else CsvRows(header)
    iterator = iter(rows)
    while True:
        try:
            row = next(iterator)
        except StopIteration:
            break
        except csv.Error as exc:
            yield from feed.drain()
            yield InputProblem(feed.lineno, f"unreadable CSV row ({_clean(str(exc), 100)})")
            continue
        if feed.problems:
            yield from feed.drain()
        if not "".join(row).strip():
            continue  # a blank row
        lineno = feed.lineno if feed.lineno > header_line else header_line
        try:
            if generic is not None:
                yield from generic(row, default)
            else:
                record = {}
                for name, cell in zip(header, row, strict=False):
                    if name not in record:
                        record[name] = cell
                yield from _zmap_row(record, lineno, default)
        except _Bad as exc:
            yield InputProblem(lineno, str(exc))
    yield from feed.drain()
