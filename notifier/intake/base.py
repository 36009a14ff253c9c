"""What every reader shares: the item types, bounds, and cleaning of hostile values."""

from __future__ import annotations

import ipaddress
import math
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import urlsplit

from ..models import Finding, HostHint, IPAddress

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
]

FORMATS = (
    "plain",
    "csv",
    "jsonl",
    "masscan-json",
    "masscan-list",
    "nmap-xml",
    "nuclei",
    "zgrab2",
    "zmap-csv",
)
_ALIASES = {
    "auto": None,
    "txt": "plain",
    "text": "plain",
    "json": "jsonl",
    "ndjson": "jsonl",
    "shadowserver": "csv",
    "nmap": "nmap-xml",
    "xml": "nmap-xml",
    "zmap": "zmap-csv",
}

DEFAULT_FINDING = "exposed network service"
MAX_LINE = 1 << 20  # characters in a line: 1 MiB of ASCII
MAX_TEXT = 500  # characters of finding text; longer is leaked data or noise, so it is cut
MAX_JSON_DEPTH = 64
MAX_EXTRAS = 32
_MAX_VALUE = 200  # characters of one extra value
_MAX_KEY = 64
_CHUNK = 1 << 16
_XML_MAX_DEPTH = 64
# bytes fed without a single element boundary: only a giant text node or comment does that
_XML_MAX_QUIET = 16 << 20
_MAX_PENDING_PORTS = 200_000
_MAX_ITEMS_PER_RECORD = 4096


class Readable(Protocol):
    """A binary or text stream: ``sys.stdin.buffer``, an open file, ``io.BytesIO``..."""

    def read(self, size: int, /) -> bytes | str: ...


@dataclass(frozen=True, slots=True)
class InputProblem:
    """A line that could not be read; it was skipped and reading went on."""

    line: int
    message: str


InputItem = Finding | InputProblem

_Line = tuple[int, str | None]  # (line number, text); None: the line was too long and dropped


class _Bad(Exception):
    """A record is malformed: becomes an InputProblem for its line."""


# --------------------------------------------------------------------------- cleaning helpers


# short texts a file repeats on many lines (a finding, a tag, a column name), cleaned once
_REMEMBERED = 256
_remembered: dict[tuple[str, int], str] = {}
_hostnames: dict[str, str | None] = {}


def _clean(value: str, limit: int) -> str:
    """One line of printable text, at most ``limit`` characters (cut with an ellipsis)."""
    if len(value) > _REMEMBERED:
        return _cleaned(value, limit)
    known = _remembered.get((value, limit))
    if known is None:
        if len(_remembered) >= 8192:
            _remembered.clear()
        known = _remembered[(value, limit)] = _cleaned(value, limit)
    return known


def _cleaned(value: str, limit: int) -> str:
    window = limit * 4  # bounded work: what lies past the window is cut anyway
    cut = len(value) > window
    text = value[:window]
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else " " for ch in text)
    text = " ".join(text.split())
    if cut or len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def _shown(value: str) -> str:
    """A short, clean rendering of hostile input for a problem message."""
    return repr(_clean(value, 60))


_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


def _hostname(value: object) -> str | None:
    """A syntactically valid DNS name (lower case, ASCII), or None."""
    if not isinstance(value, str):
        return None
    if len(value) > 300:
        return _valid_name(value)
    if value in _hostnames:
        return _hostnames[value]
    if len(_hostnames) >= 8192:
        _hostnames.clear()
    name = _hostnames[value] = _valid_name(value)
    return name


def _valid_name(value: str) -> str | None:
    name = value.strip().rstrip(".").lower()
    if not name or len(name) > 253:
        return None
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    labels = name.split(".")
    # an all-numeric top label is an address typo (999.1.2.3), never a name; so no IPv4
    # address passes, and no IPv6 address either (":" is not allowed in a label)
    if labels[-1].isdigit() or not all(_LABEL.fullmatch(label) for label in labels):
        return None
    return name


_MAX_HINTS = 64  # host names kept per record; resolve checks ten and notes the rest
_MAX_CERT_NAMES = 256  # names read from one certificate; a 10,000-name certificate is cut here
# labels that name a transport or a scanner's category, not the product a guide is written for
_VAGUE_SERVICES = frozenset(
    {"", "unknown", "tcpwrapped", "http", "https", "http-alt", "http-proxy", "ssl", "tls",
     "tcp", "udp", "www", "vuln", "default-login", "misconfig", "exposure", "unauth",
     "network", "detect", "tech", "panel", "cve", "kev", "intrusive", "discovery"}
)  # fmt: skip


def _hints(pairs: Iterable[tuple[object, str]]) -> tuple[HostHint, ...]:
    """Valid host names a record carries, each once, with the field it came from."""
    kept: dict[str, HostHint] = {}
    for value, source in pairs:
        name = _hostname(value.removeprefix("*.") if isinstance(value, str) else value)
        if name and name not in kept:
            kept[name] = HostHint(name, source)
            if len(kept) >= _MAX_HINTS:
                break
    return tuple(kept.values())


def _service(*candidates: object) -> str | None:
    """The first candidate that names a product or protocol, lower case, as the scanner said."""
    for value in candidates:
        if not isinstance(value, str):
            continue
        text = _clean(value, 40).lower().removeprefix("ssl/")
        if text not in _VAGUE_SERVICES:
            return text
    return None


def _has_control(value: object) -> bool:
    return isinstance(value, str) and any(not ch.isprintable() for ch in value[:1024].strip())


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_DOTTED_QUAD = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")


def _ip(value: object) -> IPAddress:
    if not isinstance(value, str):
        raise _Bad("no IP address")
    if _DOTTED_QUAD.fullmatch(value):
        # the common case, three times faster than ipaddress's own parser on big lists
        return ipaddress.IPv4Address(socket.inet_aton(value))
    text = value.strip()
    if not text:
        raise _Bad("no IP address")
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        if len(text) <= 64:
            return ipaddress.ip_address(text)
    except ValueError:
        pass
    if "/" in text:
        raise _Bad(f"a network, not an address: {_shown(text)} (list single addresses)")
    if "." in text and _hostname(text):
        raise _Bad(f"a host name, not an IP address: {_shown(text)} (resolve it first)")
    raise _Bad(f"not an IP address: {_shown(text)}")


def _port(value: object) -> int | None:
    if value is None or value == "":
        return None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text.isascii() and text.isdigit() and len(text) <= 6:
            number = int(text)
    if number is None:
        shown = _shown(value) if isinstance(value, str) else type(value).__name__
        raise _Bad(f"not a port number: {shown}")
    if not 1 <= number <= 65535:
        raise _Bad(f"port out of range: {number}")
    return number


_NUMBER = re.compile(r"\d{1,20}(?:\.\d{1,9})?")


def _epoch(seconds: float) -> datetime | None:
    if not math.isfinite(seconds) or seconds <= 0:
        return None
    # milli-, micro- and nanosecond stamps are common in scanner output
    while seconds > 1e11:
        seconds /= 1000
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _time(value: object) -> datetime | None:
    """An aware UTC datetime from an epoch number or ISO 8601 text, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return _epoch(value)
    if isinstance(value, int):
        return _epoch(float(value)) if abs(value) < 1 << 64 else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > 64:
        return None
    if _NUMBER.fullmatch(text):
        return _epoch(float(text))
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)  # scanners and Shadowserver write UTC
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _scalar(value: object) -> str | None:
    """Text of a JSON scalar; None for objects and arrays (never flattened into a finding)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def _text(value: object, limit: int) -> str:
    raw = _scalar(value)
    return _clean(raw, limit) if raw is not None else ""


class _Extras:
    """Bounded, cleaned (key, value) pairs for ``Finding.extra``."""

    def __init__(self) -> None:
        self.items: dict[str, str] = {}

    def add(self, key: str, value: object) -> None:
        if len(self.items) >= MAX_EXTRAS:
            return
        name = _clean(key, _MAX_KEY)
        text = _text(value, _MAX_VALUE)
        if name and text and name not in self.items:
            self.items[name] = text

    def pairs(self) -> tuple[tuple[str, str], ...]:
        return tuple(self.items.items())


def _safe_url(value: str) -> str:
    """A URL with only scheme, host, port and path: user-info and query may carry secrets."""
    text = value.strip()
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return _clean(re.split(r"[?#]", text, maxsplit=1)[0], _MAX_VALUE)
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    if parts.scheme:
        return _clean(f"{parts.scheme}://{netloc}{parts.path}", _MAX_VALUE)
    return _clean(re.split(r"[?#]", text, maxsplit=1)[0], _MAX_VALUE)


def _host_port(value: str) -> tuple[str, int | None]:
    """Host and port of ``scheme://host:port/...``, ``host:port``, ``[v6]:port`` or ``host``."""
    text = value.strip()
    if "://" in text:
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError:
            return "", None
        if port is None:
            port = {"http": 80, "https": 443}.get(parts.scheme.lower())
        return parts.hostname or "", port
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, _port(rest[1:]) if rest.startswith(":") else None
    if text.count(":") == 1:
        host, _, port_text = text.partition(":")
        return host, _port(port_text)
    return text, None
