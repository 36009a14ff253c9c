"""Findings read from scanner output, as a stream: one address list or report at a time.

``read_findings`` turns what scanners write (a plain address list, CSV such as Shadowserver's
reports, JSON Lines, masscan ``-oJ``/``-oL``, nmap ``-oX``, nuclei ``-jsonl``, zgrab2, zmap CSV)
into ``Finding`` values. The input is hostile until proven otherwise, so:

- nothing holds the whole input: lines are cut from fixed-size chunks, a line longer than
  ``MAX_LINE`` is reported and skipped without being kept, XML is parsed incrementally with every
  element dropped once read;
- a malformed line becomes an ``InputProblem`` (line number, one sentence) and reading goes on;
- only what describes the exposure is kept: banners, response bodies, extracted results and script
  output are never copied, and every text is cleaned of control characters and cut to length.

Addresses are parsed, not judged: whether a target may be notified is the caller's decision.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

from ..errors import ConfigError
from .base import (
    _ALIASES,
    DEFAULT_FINDING,
    FORMATS,
    MAX_EXTRAS,
    MAX_JSON_DEPTH,
    MAX_LINE,
    MAX_TEXT,
    InputItem,
    InputProblem,
    Readable,
    _clean,
    _Line,
)
from .generic import _generic
from .jsonl import _json_lines, _nuclei, _zgrab2
from .lines import _lines, _too_long, sniff_format
from .masscan import _masscan_json, _masscan_list
from .nmap import _nmap_xml
from .text import _csv, _plain

__all__ = [
    "DEFAULT_FINDING",
    "FORMATS",
    "MAX_EXTRAS",
    "MAX_JSON_DEPTH",
    "MAX_LINE",
    "MAX_TEXT",
    "InputItem",
    "InputProblem",
    "Readable",
    "read_findings",
    "sniff_format",
]

# --------------------------------------------------------------------------- entry point


def _jsonl(lines: Iterator[_Line], default: str) -> Iterator[InputItem]:
    return _json_lines(lines, default, _generic)


def _nuclei_lines(lines: Iterator[_Line], default: str) -> Iterator[InputItem]:
    return _json_lines(lines, default, _nuclei)


def _zgrab2_lines(lines: Iterator[_Line], default: str) -> Iterator[InputItem]:
    return _json_lines(lines, default, _zgrab2)


def _zmap_csv(lines: Iterator[_Line], default: str) -> Iterator[InputItem]:
    return _csv(lines, default, zmap=True)


_PARSERS: dict[str, Callable[[Iterator[_Line], str], Iterator[InputItem]]] = {
    "plain": _plain,
    "csv": _csv,
    "jsonl": _jsonl,
    "masscan-json": _masscan_json,
    "masscan-list": _masscan_list,
    "nmap-xml": _nmap_xml,
    "nuclei": _nuclei_lines,
    "zgrab2": _zgrab2_lines,
    "zmap-csv": _zmap_csv,
}


def _counted(lines: Iterator[_Line], last: list[int]) -> Iterator[_Line]:
    for item in lines:
        last[0] = item[0]
        yield item


def _read(stream: Readable, fmt: str | None, default: str) -> Iterator[InputItem]:
    last = [0]
    lines: Iterator[_Line] = _counted(_lines(stream), last)
    try:
        if fmt is None:
            masscan_header = False
            head: tuple[int, str] | None = None
            for lineno, text in lines:
                if text is None:
                    yield _too_long(lineno)
                    continue
                body = text.strip()
                if body.startswith("#"):
                    masscan_header = masscan_header or body.lower().startswith("#masscan")
                elif body:
                    head = (lineno, text)
                    break
            if head is None:
                return
            fmt = "masscan-list" if masscan_header else sniff_format(head[1])
            lines = itertools.chain((head,), lines)
        yield from _PARSERS[fmt](lines, default)
    except (OSError, UnicodeError) as exc:
        # the stream itself failed (a text stream that met bad bytes, a read error)
        yield InputProblem(last[0] + 1, f"input could not be read further: {_clean(str(exc), 120)}")


def read_findings(
    stream: Readable,
    *,
    fmt: str | None = None,
    default_finding: str = DEFAULT_FINDING,
) -> Iterator[InputItem]:
    """Findings and problems from scanner output, in input order, read as a stream.

    ``fmt`` forces one of ``FORMATS`` (``None`` or ``"auto"`` detects it from the first
    non-blank line); an unknown name raises ``ConfigError`` here, before anything is read.
    ``default_finding`` is the text for records that name no finding of their own (a bare
    address, an open port). Each malformed line is an ``InputProblem`` and reading goes on.
    """
    if fmt is not None:
        name = fmt.strip().lower()
        if name not in _PARSERS and name not in _ALIASES:
            raise ConfigError(f"unknown input format {fmt!r}; known: auto, {', '.join(FORMATS)}")
        fmt = _ALIASES.get(name, name)
    text = _clean(default_finding, MAX_TEXT)
    if not text:
        raise ConfigError("the default finding text is empty")
    return _read(stream, fmt, text)
