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

import codecs
import csv
import ipaddress
import itertools
import json
import math
import re
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import urlsplit
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

import defusedxml.ElementTree as defused_et
from defusedxml import DefusedXmlException

from .errors import ConfigError
from .models import Finding, HostHint, IPAddress

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


def _clean(value: str, limit: int) -> str:
    """One line of printable text, at most ``limit`` characters (cut with an ellipsis)."""
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
    name = value.strip().rstrip(".").lower()
    if not name or len(name) > 253:
        return None
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    labels = name.split(".")
    # an all-numeric top label is an address typo (999.1.2.3), never a name
    if labels[-1].isdigit() or not all(_LABEL.fullmatch(label) for label in labels):
        return None
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name
    return None


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


# --------------------------------------------------------------------------- reading lines


def _chunks(stream: Readable) -> Iterator[bytes | str]:
    read1 = getattr(stream, "read1", None)
    read: Callable[[int], bytes | str] = read1 if callable(read1) else stream.read
    while True:
        chunk = read(_CHUNK)
        if not chunk:
            return
        yield bytes(chunk) if isinstance(chunk, bytearray | memoryview) else chunk


def _split(chunks: Iterable[str]) -> Iterator[_Line]:
    """Lines without their ends, at most MAX_LINE long; a longer one is None, never held whole."""
    lineno = 0
    pending: list[str] = []
    size = 0
    skipping = False
    for chunk in chunks:
        parts = chunk.split("\n")
        last = parts.pop()
        for part in parts:
            if skipping:
                skipping = False
            elif size + len(part) > MAX_LINE:
                lineno += 1
                yield lineno, None
            else:
                lineno += 1
                if pending:
                    pending.append(part)
                    part = "".join(pending)
                yield lineno, part[:-1] if part.endswith("\r") else part
            pending = []
            size = 0
        if skipping or not last:
            continue
        if size + len(last) > MAX_LINE:
            lineno += 1
            yield lineno, None
            skipping = True
            pending = []
            size = 0
        else:
            pending.append(last)
            size += len(last)
    if pending and not skipping:
        line = "".join(pending)
        yield lineno + 1, line[:-1] if line.endswith("\r") else line


_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _decoded(chunks: Iterable[bytes], encoding: str) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder(encoding)("replace")
    for chunk in chunks:
        text = decoder.decode(chunk)
        if text:
            yield text
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail


def _as_bytes(chunks: Iterable[bytes | str]) -> Iterator[bytes]:
    for chunk in chunks:
        yield chunk if isinstance(chunk, bytes) else chunk.encode("utf-8", "surrogatepass")


def _as_str(chunks: Iterable[bytes | str]) -> Iterator[str]:
    for chunk in chunks:
        yield chunk if isinstance(chunk, str) else chunk.decode("utf-8", "replace")


def _lines(stream: Readable) -> Iterator[_Line]:
    """Numbered lines of the stream, decoded: UTF-8 unless a UTF-16/32 byte-order mark says so."""
    raw = _chunks(stream)
    first = next(raw, None)
    if first is None:
        return
    if isinstance(first, str):
        yield from _split(_as_str(itertools.chain((first.removeprefix("\ufeff"),), raw)))
        return
    head = first
    while len(head) < 4:  # a byte-order mark may arrive split over short pipe reads
        more = next(_as_bytes(raw), None)
        if more is None:
            break
        head += more
    encoding = next((enc for bom, enc in _BOMS if head.startswith(bom)), "utf-8-sig")
    yield from _split(_decoded(itertools.chain((head,), _as_bytes(raw)), encoding))


def _too_long(lineno: int) -> InputProblem:
    return InputProblem(lineno, f"line longer than {MAX_LINE} characters; skipped")


# --------------------------------------------------------------------------- format detection

_MASSCAN_LIST = re.compile(
    r"(open|closed|banner)\s+(tcp|udp|sctp|icmp)\s+(\d+)\s+(\S+)\s+(\d+)(?:\s+(\S+)(?:\s+.*)?)?",
    re.DOTALL,
)
_MASSCAN_FINISHED = re.compile(r"\{\s*finished\s*:\s*1\s*\}")
_IP_KEYS = (
    "ip",
    "ip_address",
    "ipaddress",
    "ipv4",
    "ipv6",
    "addr",
    "address",
    "src_ip",
    "source_ip",
    "saddr",
    "host",
)
_PORT_KEYS = ("port", "dst_port", "dest_port", "destination_port", "dstport")
_TEXT_KEYS = ("finding", "text", "description", "issue", "vulnerability", "tag")
_HOST_KEYS = ("hostname", "host_name", "fqdn", "domain", "host", "rdns")
_TIME_KEYS = (
    "observed_at",
    "timestamp",
    "time",
    "datetime",
    "date",
    "seen_at",
    "last_seen",
    "first_seen",
)
_DELIMITERS = (",", "\t", ";", "|")


def _key(name: str) -> str:
    return name.strip().strip("\ufeff\"' ").lower().replace(" ", "_").replace("-", "_")


def _delimiter(line: str) -> str:
    return max(_DELIMITERS, key=line.count)


def _header(line: str) -> list[str] | None:
    """Normalised column names if ``line`` reads as a CSV header naming an address column."""
    try:
        fields = next(csv.reader([line], delimiter=_delimiter(line)), [])
    except csv.Error:
        return None
    names = [_key(f) for f in fields]
    if any(n in _IP_KEYS for n in names):
        return names
    return None


def _json_object_kind(value: object) -> str:
    if not isinstance(value, dict):
        return "jsonl"
    if "template-id" in value or "templateID" in value:
        return "nuclei"
    if isinstance(value.get("ports"), list):
        return "masscan-json"
    data = value.get("data")
    if isinstance(data, dict) and any(isinstance(v, dict) and "status" in v for v in data.values()):
        return "zgrab2"
    return "jsonl"


def sniff_format(line: str) -> str:
    """The format a stream starting with ``line`` (its first non-blank, non-comment line) is in."""
    text = line.strip().lstrip("\ufeff").strip()
    if text.startswith("<"):
        return "nmap-xml"
    if text.startswith("[") and text[1:].lstrip()[:1] in ("", "{"):
        return "masscan-json"  # a JSON array opening, not a bracketed IPv6 address
    if text.startswith("{"):
        try:
            return _json_object_kind(_load_json(text.rstrip(",").strip()))
        except _Bad:
            pass
        if '"template-id"' in text or '"templateID"' in text:
            return "nuclei"
        if '"ports"' in text:
            return "masscan-json"
        if '"data"' in text and '"status"' in text:
            return "zgrab2"
        return "jsonl"
    if text.lower().startswith("#masscan") or _MASSCAN_LIST.fullmatch(text):
        return "masscan-list"
    names = _header(text)
    if names is not None:
        return "zmap-csv" if "saddr" in names else "csv"
    return "plain"


# --------------------------------------------------------------------------- JSON


_JSON_TOKEN = re.compile(r'[\[\]{}"]')
_JSON_STRING = re.compile(r'"(?>[^"\\]+|\\.)*"', re.DOTALL)


def _check_depth(text: str) -> None:
    """Refuse JSON nested past MAX_JSON_DEPTH before the decoder recurses into it (linear)."""
    if text.count("{") + text.count("[") <= MAX_JSON_DEPTH:
        return  # the ordinary flat record: no scan needed
    depth = 0
    found = _JSON_TOKEN.search(text)
    while found is not None:
        char = found.group()
        position = found.end()
        if char == '"':
            string = _JSON_STRING.match(text, found.start())
            if string is None:
                raise _Bad("not valid JSON (unterminated string)")
            position = string.end()
        elif char in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise _Bad(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        else:
            depth -= 1
        found = _JSON_TOKEN.search(text, position)


def _load_json(text: str) -> object:
    if len(text) > MAX_LINE:
        raise _Bad(f"JSON value longer than {MAX_LINE} characters")
    _check_depth(text)
    try:
        value: object = json.loads(text)
    except RecursionError:
        raise _Bad(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "unreadable value"
        raise _Bad(f"not valid JSON ({reason})") from None
    return value


_Record = Callable[[Mapping[str, object], int, str], list[InputItem]]


def _json_lines(lines: Iterator[_Line], default: str, handle: _Record) -> Iterator[InputItem]:
    for lineno, text in lines:
        if text is None:
            yield _too_long(lineno)
            continue
        body = text.strip()
        if not body or body.startswith("#"):
            continue
        try:
            value = _load_json(body)
            if not isinstance(value, dict):
                raise _Bad("expected a JSON object")
            yield from handle(value, lineno, default)
        except _Bad as exc:
            yield InputProblem(lineno, str(exc))


def _generic(record: Mapping[str, object], lineno: int, default: str) -> list[InputItem]:
    """A CSV row or JSON object with ip/port/finding/hostname/observed_at and extra columns."""
    fields: dict[str, object] = {}
    for name, value in itertools.islice(record.items(), 1024):
        fields.setdefault(_key(name), value)
    ip_key = next((k for k in _IP_KEYS[:-1] if _scalar(fields.get(k))), None)
    if ip_key is None:
        if not _scalar(fields.get("host")):
            raise _Bad("no IP address (expected an ip column)")
        ip_key = "host"
    ip = _ip(_scalar(fields[ip_key]))
    port_key = next((k for k in _PORT_KEYS if _scalar(fields.get(k))), None)
    port = _port(_scalar(fields[port_key]) if port_key else None)
    text_key = next((k for k in _TEXT_KEYS if _text(fields.get(k), MAX_TEXT)), None)
    text = _text(fields[text_key], MAX_TEXT) if text_key else default
    for key in _HOST_KEYS:
        if key != ip_key and _has_control(fields.get(key)):
            raise _Bad(f"{key} {_shown(str(fields[key]))} contains control characters")
    host_key = next(
        (k for k in _HOST_KEYS if k != ip_key and _hostname(fields.get(k))),
        None,
    )
    time_key = next((k for k in _TIME_KEYS if _scalar(fields.get(k))), None)
    observed = _time(fields[time_key]) if time_key else None
    used = {ip_key, port_key, text_key, host_key}
    if observed is not None:
        used.add(time_key)
    extras = _Extras()
    for name, value in fields.items():
        if name in used or name in _IP_KEYS:
            continue
        if name == "extra" and isinstance(value, dict):
            for sub, subvalue in itertools.islice(value.items(), MAX_EXTRAS):
                extras.add(str(sub), subvalue)
        else:
            extras.add(name, value)
    return [
        Finding(
            ip=ip,
            text=text,
            port=port,
            hostname=_hostname(fields[host_key]) if host_key else None,
            observed_at=observed,
            extra=extras.pairs(),
            hints=_hints((fields.get(k), f"input {k}") for k in _HOST_KEYS if k != ip_key),
            service=_service(_scalar(fields.get("service")), _scalar(fields.get("product"))),
        )
    ]


def _nuclei(record: Mapping[str, object], lineno: int, default: str) -> list[InputItem]:
    """One nuclei match; request, response and extracted results are never read."""
    if record.get("matcher-status") is False:
        return []
    template = _text(record.get("template-id") or record.get("templateID"), 100)
    info = record.get("info")
    info = info if isinstance(info, dict) else {}
    name = _text(info.get("name"), 200)
    severity = _text(info.get("severity"), 20).lower() or "unknown"
    if not template and not name:
        raise _Bad("not a nuclei result (no template-id)")
    matched = _scalar(record.get("matched-at")) or _scalar(record.get("matched")) or ""
    host = _scalar(record.get("host")) or _scalar(record.get("url")) or matched
    host_name, url_port = _host_port(host) if host else ("", None)
    ip = _ip(_scalar(record.get("ip")) or host_name)
    port = _port(_scalar(record.get("port"))) or url_port
    text = f"nuclei: {name or template} [{severity}]" + (f" ({template})" if template else "")
    tags = info.get("tags")
    if isinstance(tags, str):
        tags = tags.split(",")
    tag_list = [t.strip() for t in itertools.islice(tags, 32)] if isinstance(tags, list) else []
    extras = _Extras()
    extras.add("template-id", template)
    extras.add("severity", severity)
    if matched:
        extras.add("matched-at", _safe_url(matched))
    extras.add("matcher-name", record.get("matcher-name"))
    extras.add("type", record.get("type"))
    return [
        Finding(
            ip=ip,
            text=_clean(text, MAX_TEXT),
            port=port,
            hostname=_hostname(host_name),
            observed_at=_time(record.get("timestamp")),
            extra=extras.pairs(),
            hints=_hints([(host_name, "nuclei host")]),
            service=_service(*tag_list, template.partition("-")[0]),
        )
    ]


def _zgrab_port(module: Mapping[str, object]) -> int | None:
    result = module.get("result")
    result = result if isinstance(result, dict) else {}
    for value in (module.get("port"), result.get("port")):
        if _scalar(value):
            return _port(_scalar(value))
    response = result.get("response")
    request = response.get("request") if isinstance(response, dict) else None
    url = request.get("url") if isinstance(request, dict) else None
    host = url.get("host") if isinstance(url, dict) else None
    if isinstance(host, str) and host:
        return _host_port(host)[1]
    return None


def _dig(value: object, *path: str) -> object:
    for step in path:
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value


def _cert_names(result: object) -> Iterator[tuple[object, str]]:
    """Subject CN and DNS SANs of the server certificate a zgrab2 module saw, bounded."""
    for handshake in (
        _dig(result, "handshake_log"),
        _dig(result, "tls", "handshake_log"),
        _dig(result, "response", "request", "tls_log", "handshake_log"),
    ):
        parsed = _dig(handshake, "server_certificates", "certificate", "parsed")
        if not isinstance(parsed, dict):
            continue
        names: list[object] = []
        for field in (_dig(parsed, "subject", "common_name"),
                      _dig(parsed, "extensions", "subject_alt_name", "dns_names")):  # fmt: skip
            if isinstance(field, list):
                names.extend(itertools.islice(field, _MAX_CERT_NAMES))
            elif isinstance(field, str):
                names.append(field)
        for name in names[:_MAX_CERT_NAMES]:
            yield name, "tls certificate"
        return


def _zgrab2(record: Mapping[str, object], lineno: int, default: str) -> list[InputItem]:
    """One finding per module that answered; module results are never copied."""
    ip = _ip(record.get("ip"))
    data = record.get("data")
    if not isinstance(data, dict):
        raise _Bad("no data object in zgrab2 result")
    hostname = _hostname(record.get("domain"))
    items: list[InputItem] = []
    for name, module in itertools.islice(data.items(), 64):
        if not isinstance(module, dict) or module.get("status") != "success":
            continue
        label = _clean(str(name), 64)
        try:
            port = _zgrab_port(module)
        except _Bad as exc:
            items.append(InputProblem(lineno, f"{label}: {exc}"))
            continue
        extras = _Extras()
        extras.add("module", label)
        extras.add("protocol", module.get("protocol"))
        result = module.get("result")
        names = [(record.get("domain"), "zgrab2 domain")]
        names.append((_host_port(str(_dig(result, "response", "request", "host") or ""))[0],
                      "http host"))  # fmt: skip
        names.extend(_cert_names(result))
        items.append(
            Finding(
                ip=ip,
                text=_clean(f"{label} responded (status success)", MAX_TEXT),
                port=port,
                hostname=hostname,
                observed_at=_time(module.get("timestamp")),
                extra=extras.pairs(),
                hints=_hints(names),
                service=_service(module.get("protocol"), label),
            )
        )
    return items


def _masscan_ports(
    ip: IPAddress,
    ports: Iterable[object],
    observed: datetime | None,
    lineno: int,
    default: str,
) -> list[InputItem]:
    items: list[InputItem] = []
    for entry in itertools.islice(ports, _MAX_ITEMS_PER_RECORD):
        if not isinstance(entry, dict):
            items.append(InputProblem(lineno, "a masscan port entry is not an object"))
            continue
        try:
            port = _port(_scalar(entry.get("port")))
            if port is None:
                raise _Bad("a masscan port entry has no port")
        except _Bad as exc:
            items.append(InputProblem(lineno, str(exc)))
            continue
        proto = _text(entry.get("proto"), 10).lower() or "tcp"
        status = entry.get("status")
        service = entry.get("service")
        extras = _Extras()
        extras.add("protocol", proto)
        if status is not None:
            if status != "open":
                continue
            text = default
        elif isinstance(service, dict) and _text(service.get("name"), 40):
            # a banner record: the service name describes it, the banner itself is never kept
            name = _text(service.get("name"), 40)
            extras.add("service", name)
            text = f"{name} service on {port}/{proto}"
        else:
            continue
        label = _scalar(service.get("name")) if isinstance(service, dict) else None
        items.append(
            Finding(
                ip=ip,
                text=text,
                port=port,
                observed_at=observed,
                extra=extras.pairs(),
                service=_service(label),
            )
        )
    return items


def _masscan_record(record: Mapping[str, object], lineno: int, default: str) -> list[InputItem]:
    ports = record.get("ports")
    if not isinstance(ports, list):
        raise _Bad("no ports list in masscan record")
    ip = _ip(record.get("ip"))
    return _masscan_ports(ip, ports, _time(record.get("timestamp")), lineno, default)


def _masscan_json(lines: Iterator[_Line], default: str) -> Iterator[InputItem]:
    """``-oJ``: a JSON array written one record a line, with ``[``/``]`` lines and commas."""
    for lineno, text in lines:
        if text is None:
            yield _too_long(lineno)
            continue
        body = text.strip().strip(",").strip()
        if not body or body in ("[", "]") or _MASSCAN_FINISHED.fullmatch(body):
            continue
        try:
            value = _load_json(body)
            records = value if isinstance(value, list) else [value]
            for record in itertools.islice(records, _MAX_ITEMS_PER_RECORD):
                if not isinstance(record, dict):
                    raise _Bad("expected a JSON object")
                yield from _masscan_record(record, lineno, default)
        except _Bad as exc:
            yield InputProblem(lineno, str(exc))


def _masscan_list(lines: Iterator[_Line], default: str) -> Iterator[InputItem]:
    """``-oL``: ``open tcp 9200 192.0.2.1 1390000000`` lines between ``#masscan`` comments."""
    for lineno, text in lines:
        if text is None:
            yield _too_long(lineno)
            continue
        body = text.strip()
        if not body or body.startswith("#"):
            continue
        match = _MASSCAN_LIST.fullmatch(body)
        if match is None:
            yield InputProblem(lineno, f"not a masscan list line: {_shown(body)}")
            continue
        kind, proto, port_text, address, stamp, service = match.groups()
        if kind == "closed":
            continue
        try:
            ip = _ip(address)
            port = _port(port_text)
        except _Bad as exc:
            yield InputProblem(lineno, str(exc))
            continue
        extras = _Extras()
        extras.add("protocol", proto)
        finding_text = default
        if kind == "banner":
            if not service:
                continue
            name = _clean(service, 40)
            extras.add("service", name)
            finding_text = f"{name} service on {port}/{proto}"
        yield Finding(
            ip=ip, text=finding_text, port=port, observed_at=_time(stamp), extra=extras.pairs()
        )


# --------------------------------------------------------------------------- plain and CSV

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
    handle: _Record = _zmap_row if zmap else _generic
    rows: Iterable[list[str]] = csv.reader(feed, delimiter=delimiter)
    if zmap and "saddr" not in header:
        # a bare list of responding addresses, which zmap writes without a header
        header = ["saddr"]
        rows = itertools.chain([fields], rows)
    elif not zmap and not any(n in _IP_KEYS for n in header):
        yield InputProblem(header_line, "CSV header names no address column (such as ip)")
        return
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
        yield from feed.drain()
        if not any(cell.strip() for cell in row):
            continue
        lineno = feed.lineno if feed.lineno > header_line else header_line
        record = {}
        for name, cell in zip(header, row, strict=False):
            if name not in record:
                record[name] = cell
        try:
            yield from handle(record, lineno, default)
        except _Bad as exc:
            yield InputProblem(lineno, str(exc))
    yield from feed.drain()


# --------------------------------------------------------------------------- nmap XML


class _NmapXMLParser(defused_et.DefusedXMLParser):
    """Refuses any DTD except nmap's own bare ``<!DOCTYPE nmaprun>``; never expands entities."""

    def __init__(self) -> None:
        super().__init__(
            target=TreeBuilder(), forbid_dtd=True, forbid_entities=True, forbid_external=True
        )

    def defused_start_doctype_decl(
        self, name: str, sysid: str | None, pubid: str | None, has_internal_subset: bool
    ) -> None:
        if sysid is None and pubid is None and not has_internal_subset:
            return
        super().defused_start_doctype_decl(name, sysid, pubid, has_internal_subset)


class _XMLTooLarge(Exception):
    pass


class _XMLFeed:
    """Feeds the parser one line at a time, so every event is known to within one line."""

    def __init__(self, lines: Iterator[_Line]) -> None:
        self._lines = lines
        self.lineno = 0
        self.offset: int | None = None  # parser line 1 is input line offset + 1
        self.quiet = 0
        self.problems: list[InputProblem] = []

    def read(self, size: int = -1) -> str:
        for lineno, text in self._lines:
            self.lineno = lineno
            if self.offset is None:
                if text is not None and not text.strip():
                    continue  # the XML declaration must come first
                self.offset = lineno - 1
            if text is None:
                self.problems.append(_too_long(lineno))
                text = ""  # keeps the parser's line count in step with the input
            self.quiet += len(text) + 1
            if self.quiet > _XML_MAX_QUIET:
                raise _XMLTooLarge
            return text + "\n"
        return ""

    def parser_line(self, line: int) -> int:
        return line + (self.offset or 0)


@dataclass(slots=True)
class _Port:
    port: int
    text: str
    extra: tuple[tuple[str, str], ...]
    service: str | None = None


class _NmapHost:
    def __init__(self, observed: datetime | None) -> None:
        self.observed = observed
        self.ip: IPAddress | None = None
        self.names: list[tuple[str, str]] = []
        self.pending: list[_Port] = []
        self.dropped = False

    def hostname(self) -> str | None:
        # the name the operator scanned beats the one reverse DNS gave
        for wanted in ("user", "PTR", None):
            for kind, name in self.names:
                if wanted is None or kind == wanted:
                    return name
        return None

    def finding(self, ip: IPAddress, port: _Port) -> Finding:
        return Finding(
            ip=ip,
            text=port.text,
            port=port.port,
            hostname=self.hostname(),
            observed_at=self.observed,
            extra=port.extra,
            hints=_hints(
                (name, f"nmap hostname ({kind or 'unknown'})") for kind, name in self.names
            ),
            service=port.service,
        )


def _nmap_port(elem: Element) -> _Port | None:
    """An open port described by its service fingerprint; script output is never read."""
    state = elem.find("state")
    if state is None or state.get("state") != "open":
        return None
    port = _port(elem.get("portid"))
    if port is None:
        raise _Bad("port element without portid")
    proto = _clean(elem.get("protocol") or "tcp", 10).lower()
    extras = _Extras()
    extras.add("protocol", proto)
    service = elem.find("service")
    label = ""
    product = name = ""
    if service is not None:
        name = _clean(service.get("name") or "", 40)
        if name == "unknown":
            name = ""
        if name and service.get("tunnel") == "ssl":
            name = f"ssl/{name}"
        product = _clean(service.get("product") or "", 100)
        version = _clean(service.get("version") or "", 60)
        extras.add("service", name)
        extras.add("product", product)
        extras.add("version", version)
        described = " ".join(p for p in (product, version) if p)
        if described:
            label = f"{described} ({name})" if name else described
        else:
            label = name
    text = f"{label} on {port}/{proto} open" if label else f"port {port}/{proto} open"
    named = _service(name.removeprefix("ssl/"), product)
    return _Port(port, _clean(text, MAX_TEXT), extras.pairs(), named)


def _nmap_xml(lines: Iterator[_Line], default: str) -> Iterator[InputItem]:
    """``-oX``: one finding per open port, read as the document streams by."""
    feed = _XMLFeed(lines)
    stack: list[Element] = []
    host: _NmapHost | None = None
    run_start: datetime | None = None
    events = defused_et.iterparse(feed, events=("start", "end"), parser=_NmapXMLParser())
    try:
        for event, elem in events:
            feed.quiet = 0
            yield from feed.problems
            feed.problems.clear()
            if event == "start":
                stack.append(elem)
                if len(stack) > _XML_MAX_DEPTH:
                    yield InputProblem(feed.lineno, "XML nested too deeply; reading stopped")
                    return
                if len(stack) == 1:
                    if elem.tag != "nmaprun":
                        yield InputProblem(
                            feed.lineno,
                            f"not an nmap XML report (root element {_shown(str(elem.tag))})",
                        )
                        return
                    run_start = _time(elem.get("start"))
                elif len(stack) == 2 and elem.tag == "host":
                    host = _NmapHost(_time(elem.get("starttime")) or run_start)
                continue
            stack.pop()
            depth = len(stack) + 1
            parent = stack[-1] if stack else None
            if host is not None:
                yield from _nmap_end(host, elem, depth, parent, feed.lineno)
                if depth == 2 and elem.tag == "host":
                    yield from _nmap_host_done(host, feed.lineno)
                    host = None
            # drop each element once read, so memory stays flat however large the report is;
            # a port's state and service stay until the port itself is read
            keep = parent is not None and parent.tag == "port" and elem.tag in ("state", "service")
            if parent is not None and not keep:
                parent.remove(elem)
        yield from feed.problems
    except _XMLTooLarge:
        yield InputProblem(feed.lineno, "XML text too large; reading stopped")
    except ParseError as exc:
        yield from feed.problems
        # an error at the very end is reported by expat on the line after the last one
        line = min(feed.parser_line(exc.position[0]), feed.lineno) or 1
        reason = _clean(re.sub(r": line \d+, column \d+$", "", str(exc)), 120)
        yield InputProblem(line, f"malformed XML ({reason}); reading stopped")
    except DefusedXmlException:
        yield InputProblem(
            feed.lineno, "XML declares a DTD or entities, which are refused; reading stopped"
        )


def _nmap_end(
    host: _NmapHost, elem: Element, depth: int, parent: Element | None, lineno: int
) -> Iterator[InputItem]:
    tag = elem.tag
    try:
        if depth == 3 and tag == "address":
            if elem.get("addrtype") in ("ipv4", "ipv6") and host.ip is None:
                host.ip = ip = _ip(elem.get("addr"))
                for waiting in host.pending:
                    yield host.finding(ip, waiting)
                host.pending.clear()
        elif depth == 4 and tag == "hostname" and parent is not None and parent.tag == "hostnames":
            name = _hostname(elem.get("name"))
            if name and len(host.names) < 16:
                host.names.append((elem.get("type") or "", name))
        elif depth == 4 and tag == "port" and parent is not None and parent.tag == "ports":
            port = _nmap_port(elem)
            if port is None:
                return
            if host.ip is not None:
                yield host.finding(host.ip, port)
            elif len(host.pending) < _MAX_PENDING_PORTS:
                host.pending.append(port)
            elif not host.dropped:
                host.dropped = True
                yield InputProblem(lineno, "too many ports before the host's address; dropped")
    except _Bad as exc:
        yield InputProblem(lineno, str(exc))


def _nmap_host_done(host: _NmapHost, lineno: int) -> Iterator[InputItem]:
    if host.ip is None and host.pending:
        yield InputProblem(lineno, "host with open ports but no IPv4/IPv6 address")
    host.pending.clear()


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
