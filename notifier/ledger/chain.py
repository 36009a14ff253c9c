"""The chain's canonical form: how a record is normalised, hashed and read back from a line."""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from pathlib import PurePath
from typing import Any

from ..errors import AuditIntegrityError, ConfigError

GENESIS = "0" * 64
LOG_NAME = "audit.jsonl"
MAX_RECORD_BYTES = 4 * 1024 * 1024
HEX64 = re.compile(r"[0-9a-f]{64}")
EVENT = re.compile(r"[a-z][a-z0-9-]{0,39}")
_RESERVED = frozenset({"seq", "time", "event", "prev", "hash", "sig", "key_id"})
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "secret",
        "secrets",
        "credential",
        "credentials",
        "privkey",
        "privatekey",
        "apikey",
        "secretkey",
        "signingkey",
        "accesskey",
        "sessionkey",
        "authtoken",
        "accesstoken",
        "refreshtoken",
        "bearer",
    }
)
_SECRET_PAIRS = frozenset(
    {
        ("private", "key"),
        ("api", "key"),
        ("secret", "key"),
        ("signing", "key"),
        ("access", "key"),
        ("session", "key"),
        ("auth", "token"),
        ("access", "token"),
        ("refresh", "token"),
        ("api", "token"),
        ("session", "token"),
    }
)

__all__ = [
    "GENESIS",
    "LOG_NAME",
    "MAX_RECORD_BYTES",
    "HEX64",
    "EVENT",
    "Fields",
    "canonical",
    "joined",
    "pieces",
    "pieces_hash",
    "record_hash",
    "utc_iso",
    "normalise_fields",
    "format_head",
    "parse_head",
    "LineError",
    "parse_line",
    "strings",
    "last_hash",
]
_PEM_PRIVATE = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")

Clock = Callable[[], datetime]
Record = dict[str, Any]

# --------------------------------------------------------------------------- canonical form


_CANONICAL: dict[str, Any] = {
    "sort_keys": True,
    "separators": (",", ":"),
    "ensure_ascii": False,
    "allow_nan": False,
}


# one encoder each, built once: ``json.dumps`` with options builds a new one per call (6 us), and
# an intent's fields are encoded one by one (``pieces``)
_ENCODER = json.JSONEncoder(**_CANONICAL)


def canonical(obj: Mapping[str, Any]) -> str:
    return _ENCODER.encode(obj)


def record_hash(record: Mapping[str, Any]) -> str:
    """The SHA-256 (hex) of ``record``'s canonical JSON without its ``hash`` and ``sig``."""
    body = {k: v for k, v in record.items() if k not in ("hash", "sig")}
    return hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()


def pieces(record: Mapping[str, Any]) -> dict[str, str]:
    """Each field of ``record`` as its canonical form writes it (``"name":value``): a record
    is hashed without its ``hash`` and written with it, and an intent's findings make it some
    10 kB, so its fields are encoded once for both (``joined``)."""
    return {name: canonical({name: value})[1:-1] for name, value in record.items()}


def joined(parts: Mapping[str, str], leaving: tuple[str, ...] = ()) -> str:
    """The canonical form of the record whose ``pieces`` are ``parts``, without ``leaving``."""
    return "{" + ",".join(parts[name] for name in sorted(parts) if name not in leaving) + "}"


def pieces_hash(parts: Mapping[str, str]) -> str:
    """``record_hash`` of the record whose ``pieces`` are ``parts``."""
    return hashlib.sha256(joined(parts, ("hash", "sig")).encode("utf-8")).hexdigest()


def utc_iso(moment: datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("the audit clock must return timezone-aware datetimes")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _jsonable(value: object) -> object:
    """Turn the pipeline's own types into plain JSON (called by json.dumps for unknown types)."""
    if isinstance(value, datetime):
        return utc_iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, PurePath | ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # what its constructor takes: a field worked out from those (a cache) is not its record
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.init}
    if isinstance(value, bytes | bytearray):
        raise ValueError("raw bytes do not go into the audit log: store them with store_message")
    raise ValueError(f"cannot record a value of type {type(value).__name__}")


_FIELD_ENCODER = json.JSONEncoder(default=_jsonable, **_CANONICAL)


def _name_words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()
    return [w for w in re.split(r"[^a-z0-9]+", spaced) if w]


@functools.lru_cache(maxsize=4096)
def _is_secret_name(name: str) -> bool:
    # field names repeat in every record (a batch writes thousands alike): decide each once
    words = _name_words(name)
    if any(w in _SECRET_WORDS for w in words) or "".join(words) in _SECRET_WORDS:
        return True
    return any(pair in _SECRET_PAIRS for pair in zip(words, words[1:], strict=False))


def _refuse_secrets(value: object, where: str, depth: int = 0) -> None:
    if depth > 64:
        raise ValueError(f"{where}: nested too deeply for the audit log")
    if isinstance(value, dict):
        for name, item in value.items():
            if _is_secret_name(name):
                raise ValueError(f"refusing to write secret-looking field {where}{name!r}")
            _refuse_secrets(item, f"{where}{name}.", depth + 1)
    elif isinstance(value, list):
        for item in value:
            _refuse_secrets(item, where, depth + 1)
    elif isinstance(value, str) and _PEM_PRIVATE.search(value):
        place = where.rstrip(".") or "a field"
        raise ValueError(f"refusing to write private key material in {place}")


def _suspect(value: object, depth: int) -> bool:
    """Whether ``_refuse_secrets`` could object to ``value``'s names or nesting.

    A batch's records carry every finding of a message (hundreds of small objects): walking
    them while spelling out each value's place cost more than writing them. This walk only
    looks at names and depth; where it finds something, ``_refuse_secrets`` runs to say what.
    """
    if type(value) is dict:
        if depth >= 64 and value:
            return True
        for name, item in value.items():
            if _is_secret_name(name):
                return True
            if type(item) in (dict, list) and _suspect(item, depth + 1):
                return True
    elif type(value) is list:
        if depth >= 64 and value:
            return True
        for item in value:
            if type(item) in (dict, list) and _suspect(item, depth + 1):
                return True
    return False


class Fields(dict[str, Any]):
    """A record's fields as ``normalise_fields`` makes them, with each one's canonical text
    (``pieces``) from the same encoding: the chain writes them without encoding them again (an
    intent's findings make it some 10 kB)."""

    __slots__ = ("parts",)

    def __init__(self, values: dict[str, Any], parts: dict[str, str]) -> None:
        super().__init__(values)
        self.parts = parts

    @classmethod
    def from_parts(cls, parts: Mapping[str, str]) -> Fields:
        """The fields whose pieces ``normalise_fields`` made (in another process)."""
        return cls(json.loads("{" + ",".join(parts.values()) + "}"), dict(parts))


def normalise_fields(fields: Mapping[str, object], ready: Fields | None = None) -> Fields:
    """``fields`` in the form the chain writes them, checked; with ``ready``, fields this
    function made already (where the message was composed), added as they are."""
    for name in fields:
        if name in _RESERVED or (ready is not None and name in ready):
            raise ValueError(f"{name!r} is set by the audit log itself or given twice")
    try:
        parts = {name: _FIELD_ENCODER.encode({name: value})[1:-1] for name, value in fields.items()}
        text = "{" + ",".join(parts.values()) + "}"
        plain: Record = json.loads(text)
    except (TypeError, RecursionError) as exc:
        raise ValueError(f"audit fields are not JSON-serialisable: {exc}") from None
    # a key's PEM header is plain ASCII, written unescaped: absent from the text, absent from
    # every string in it
    if _PEM_PRIVATE.search(text) or _suspect(plain, 0):
        # said of the fields in the order they were given (the canonical text sorts them)
        given = json.dumps(dict(fields), default=_jsonable, ensure_ascii=False)
        _refuse_secrets(json.loads(given), "")
    if ready is not None:
        return Fields({**plain, **ready}, {**parts, **ready.parts})
    return Fields(plain, parts)


# --------------------------------------------------------------------------- heads


def format_head(count: int, last_hash: str) -> str:
    """The chain head as committed outside: ``"N:HASH"``."""
    return f"{count}:{last_hash}"


def parse_head(text: str) -> tuple[int, str]:
    """Parse ``"N:HASH"``; ``ConfigError`` (bad input) when it is not one."""
    count, sep, digest = text.strip().partition(":")
    digest = digest.lower()
    if not sep or not count.isdigit() or not HEX64.fullmatch(digest):
        raise ConfigError(f"not a log head (expected N:HASH with a 64-digit hex hash): {text!r}")
    return int(count), digest


# --------------------------------------------------------------------------- parsing one line


class LineError(Exception):
    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def parse_line(body: bytes) -> Record:
    """A stored line as a record, checked for shape, canonical form and its own hash."""
    try:
        text = body.decode("utf-8")
        value = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise LineError("not-json", "not a JSON line") from None
    if not isinstance(value, dict):
        raise LineError("not-json", "not a JSON object")
    seq = value.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise LineError("malformed", "no valid seq")
    for name in ("time", "event"):
        if not isinstance(value.get(name), str):
            raise LineError("malformed", f"no valid {name}")
    for name in ("prev", "hash"):
        item = value.get(name)
        if not isinstance(item, str) or not HEX64.fullmatch(item):
            raise LineError("malformed", f"no valid {name}")
    for name in ("sig", "key_id"):
        if name in value and not isinstance(value[name], str):
            raise LineError("malformed", f"{name} is not a string")
    try:
        parts = pieces(value)
        text_form = joined(parts)
        computed = pieces_hash(parts)
    except (ValueError, RecursionError):
        raise LineError("malformed", "holds values JSON cannot round-trip") from None
    if text_form != text:
        raise LineError("edited", "the line was rewritten (not in the form notifier writes)")
    if computed != value["hash"]:
        raise LineError("edited", "its content no longer matches its hash")
    return value


def strings(one: object, many: object) -> list[str]:
    values = [one] if isinstance(one, str) else []
    if isinstance(many, list):
        values += [v for v in many if isinstance(v, str)]
    return values


def last_hash(last: bytes, count: int) -> str:
    try:
        value = json.loads(last)
    except (ValueError, RecursionError):
        value = None
    digest = value.get("hash") if isinstance(value, dict) else None
    if not isinstance(digest, str) or not HEX64.fullmatch(digest):
        raise AuditIntegrityError(f"line {count} (the last) is not an audit record", line=count)
    return digest
