"""Template filters in plain Python for the parts of a message that repeat per finding or guide.

A 40-finding message renders 40 table rows twice (text and HTML) and wraps some 60 paragraphs;
in the sandbox every attribute lookup and method call in a row is checked, which made those
loops most of a message's cost. These filters give the bytes the template loops gave.

``wordwrap`` replaces Jinja's filter of that name with one that takes a short path for the
common paragraph (single spaces, no hyphen to split at) and hands everything else to Jinja's
own, so a user's template wraps exactly as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from jinja2 import Environment, pass_environment
from jinja2.filters import do_wordwrap
from markupsafe import Markup, escape

__all__ = ["FILTERS", "html_rows", "table_rows", "wordwrap"]

# the characters textwrap splits words at (its own set, ASCII only), other than the plain space
_OTHER_WHITESPACE = frozenset("\t\n\x0b\x0c\r")


def _greedy(line: str, width: int, break_long_words: bool) -> list[str] | None:
    """textwrap's lines for ``line``, or None where textwrap's finer rules could differ."""
    if line[:1] == " " or line[-1:] == " " or "  " in line:
        return None  # runs of spaces are kept inside a line and dropped at its ends
    if not _OTHER_WHITESPACE.isdisjoint(line):
        return None
    words = line.split(" ")
    if break_long_words and any(len(word) > width for word in words):
        return None
    lines: list[str] = []
    current = words[0]
    size = len(current)
    for word in words[1:]:
        if size + 1 + len(word) <= width:
            current += " " + word
            size += 1 + len(word)
        else:
            lines.append(current)
            current = word
            size = len(word)
    lines.append(current)
    return lines


@pass_environment
def wordwrap(
    environment: Environment,
    s: str,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: str | None = None,
    break_on_hyphens: bool = True,
) -> str:
    """Jinja's ``wordwrap``, byte for byte, without textwrap for the plain cases."""
    if type(s) is not str or width <= 0:
        return do_wordwrap(environment, s, width, break_long_words, wrapstring, break_on_hyphens)
    newline = environment.newline_sequence if wrapstring is None else wrapstring
    return _wrapped(environment, s, width, break_long_words, newline, break_on_hyphens)


# the guides' paragraphs and the template's own sentences come back in every message
@lru_cache(maxsize=4096)
def _wrapped(
    environment: Environment,
    s: str,
    width: int,
    break_long_words: bool,
    newline: str,
    break_on_hyphens: bool,
) -> str:
    paragraphs = []
    for line in s.splitlines():
        wrapped: list[str] | None = None
        if not line:
            wrapped = []
        elif not (break_on_hyphens and "-" in line):
            wrapped = _greedy(line, width, break_long_words)
        if wrapped is None:
            paragraphs.append(
                do_wordwrap(environment, line, width, break_long_words, newline, break_on_hyphens)
            )
        else:
            paragraphs.append(newline.join(wrapped))
    return newline.join(paragraphs)


def table_rows(findings: Sequence[dict[str, str]], ip_w: int, port_w: int, seen_w: int) -> str:
    """The plain-text findings table's rows (address, port, observed, finding [host])."""
    return "\n".join(
        f"  {f['ip'].ljust(ip_w)}  {f['port'].ljust(port_w)}  "
        f"{(f['observed_at'] or '-').ljust(seen_w)}  {f['text']}"
        + (f" [{f['hostname']}]" if f["hostname"] else "")
        for f in findings
    )


def html_rows(findings: Sequence[dict[str, str]], not_recorded: str) -> Markup:
    """The HTML findings table's rows, every value escaped."""
    missing = escape(not_recorded)
    rows = "".join(
        f"<tr><td>{escape(f['ip'])}</td><td>{escape(f['port'])}</td>"
        f"<td>{escape(f['hostname'])}</td>"
        f"<td>{escape(f['observed_at']) if f['observed_at'] else missing}</td>"
        f"<td>{escape(f['text'])}</td></tr>\n"
        for f in findings
    )
    # every value above went through escape(); Markup.format would too, at twice the cost
    return Markup(rows)  # noqa: S704


FILTERS: dict[str, Any] = {
    "wordwrap": wordwrap,
    "table_rows": table_rows,
    "html_rows": html_rows,
}
