"""Reading a stream of lines (any encoding, bounded length) and guessing its format."""

from __future__ import annotations

import codecs
import csv
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator

from .base import _CHUNK, MAX_JSON_DEPTH, MAX_LINE, InputProblem, Readable, _Bad, _Line

# --------------------------------------------------------------------------- reading lines


__all__: list[str] = []  # internal: the package (notifier.intake) is the surface


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
