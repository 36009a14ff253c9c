"""How cached values become text and back: source reports by their dataclass types, the rest
as plain JSON. A row that no longer decodes (the models changed, the file was damaged) is a
``ValueError``, which the cache turns into a miss."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from ..models import SourceReport

__all__ = [
    "DEFAULT_CODECS",
    "JSON_CODEC",
    "REPORTS_CODEC",
    "Codec",
    "dump_reports",
    "load_reports",
]

_REPORTS_FORMAT = 1


_PLAIN = (str, int, float, bool, type(None))
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _encode(value: Any) -> Any:
    """A JSON-able image of a model value, by the value's own type."""
    kind = type(value)
    if kind in _PLAIN:  # exact types: a StrEnum member is a str too, and takes the next path
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, str | int | float):
        return value
    if kind is list or kind is tuple:
        return [_encode(item) for item in value]
    names = _FIELD_NAMES.get(kind)
    if names is None:
        if not dataclasses.is_dataclass(value) or isinstance(value, type):
            if isinstance(value, datetime):
                return value.isoformat()
            if isinstance(value, list | tuple):
                return [_encode(item) for item in value]
            raise TypeError(f"cannot serialise {kind.__name__} for the cache")
        names = _FIELD_NAMES[kind] = tuple(f.name for f in dataclasses.fields(value))
    return {name: _encode(getattr(value, name)) for name in names}


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _decode(tp: Any, data: Any) -> Any:
    """Rebuild a value of annotated type ``tp`` from its JSON image (``ValueError`` if not one)."""
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        if len(others) != 1:
            raise ValueError(f"unsupported union {tp!r}")
        return _decode(others[0], data)
    if origin is list:
        if not isinstance(data, list):
            raise ValueError(f"expected a list, got {type(data).__name__}")
        (item,) = typing.get_args(tp)
        return [_decode(item, x) for x in data]
    if origin is tuple:
        if not isinstance(data, list):
            raise ValueError(f"expected a list, got {type(data).__name__}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], x) for x in data)
        if len(args) != len(data):
            raise ValueError(f"expected {len(args)} items, got {len(data)}")
        return tuple(_decode(a, x) for a, x in zip(args, data, strict=True))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _decode_dataclass(tp, data)
    if isinstance(tp, type) and issubclass(tp, Enum):
        return tp(data)  # ValueError on an unknown member
    if tp is datetime:
        if not isinstance(data, str):
            raise ValueError("expected an ISO 8601 string")
        return datetime.fromisoformat(data)
    if tp is bool:
        if not isinstance(data, bool):
            raise ValueError("expected a boolean")
        return data
    if tp is int:
        if not isinstance(data, int) or isinstance(data, bool):
            raise ValueError("expected an integer")
        return data
    if tp is float:
        if not isinstance(data, int | float) or isinstance(data, bool):
            raise ValueError("expected a number")
        return float(data)
    if tp is str:
        if not isinstance(data, str):
            raise ValueError("expected a string")
        return data
    raise ValueError(f"unsupported type {tp!r}")


def _decode_dataclass(cls: type, data: Any) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"expected an object for {cls.__name__}")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        # the model changed since the row was written: a miss is cheaper than a wrong answer
        raise ValueError(f"unknown fields for {cls.__name__}: {sorted(unknown)}")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _decode(hints[name], data[name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ValueError(f"missing field {cls.__name__}.{name}")
    return cls(**kwargs)


def dump_reports(reports: Iterable[SourceReport]) -> str:
    """Serialise source reports to JSON text that ``load_reports`` turns back into equal reports.

    Non-ASCII is escaped so that any Python string, lone surrogates included, survives storage.
    """
    items = []
    for report in reports:
        if not isinstance(report, SourceReport):
            raise TypeError(f"expected SourceReport, got {type(report).__name__}")
        items.append(_encode(report))
    return json.dumps({"format": _REPORTS_FORMAT, "reports": items}, separators=(",", ":"))


def load_reports(text: str) -> list[SourceReport]:
    """The reports ``dump_reports`` wrote; ``ValueError`` for anything else."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != _REPORTS_FORMAT:
        raise ValueError("not a serialised report list")
    reports = data.get("reports")
    if not isinstance(reports, list):
        raise ValueError("not a serialised report list")
    try:
        return [_decode_dataclass(SourceReport, item) for item in reports]
    except (TypeError, RecursionError) as exc:
        raise ValueError(str(exc)) from None


def _dump_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _load_json(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise ValueError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class Codec:
    """How values of one cache kind become text and back; ``load`` raises ``ValueError``."""

    dump: Callable[[Any], str]
    load: Callable[[str], Any]


REPORTS_CODEC = Codec(dump_reports, load_reports)
JSON_CODEC = Codec(_dump_json, _load_json)
# source answers kept by range (registry) or by name (PTR by address, security.txt by host,
# domain RDAP by registrable domain)
DEFAULT_CODECS: Mapping[str, Codec] = {
    "registry": REPORTS_CODEC,
    "ptr": REPORTS_CODEC,
    "security.txt": REPORTS_CODEC,
    "domain-rdap": REPORTS_CODEC,
}
