"""Generic records: a CSV row or a JSON object with ip/port/finding/hostname/observed_at columns.

Which column is the address, the port, the finding and so on is decided per record (the first
candidate column holding a value), but which candidate columns a record *has* is the same for
every row of a CSV file and nearly every object of a JSON Lines file. That part is worked out
once per set of column names (``_plan``), so a row only looks at the columns it has; the texts
that repeat from row to row (a scanner's finding text, a port, a time stamp) are read once.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TypeVar

from ..models import Finding
from .base import (
    MAX_EXTRAS,
    MAX_TEXT,
    InputItem,
    _Bad,
    _Extras,
    _has_control,
    _hints,
    _hostname,
    _ip,
    _port,
    _scalar,
    _service,
    _shown,
    _text,
    _time,
)
from .lines import _HOST_KEYS, _IP_KEYS, _PORT_KEYS, _TEXT_KEYS, _TIME_KEYS, _key

__all__: list[str] = []  # internal: the package (notifier.intake) is the surface

_ADDRESS_KEYS = frozenset(_IP_KEYS)
_MAX_FIELDS = 1024
_MAX_CACHED = 8192  # values remembered (ports, times) before the memory is emptied
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Plan:
    """The candidate columns a set of column names holds, each list in its order of preference."""

    ip: tuple[str, ...]  # address columns other than "host", the last resort
    host_is_ip: bool  # a "host" column, read as the address when no other holds one
    port: tuple[str, ...]
    text: tuple[str, ...]
    host: tuple[str, ...]
    time: tuple[str, ...]
    others: tuple[str, ...]  # columns that may become extras, in the record's order
    # ``others`` without the sole port, finding, host name and time columns, for a record that
    # took its text, host name and time from those: such a column is used or adds nothing
    lean: tuple[str, ...]
    service: bool  # a "service" or "product" column


def _plan(names: tuple[str, ...]) -> _Plan:
    # hostile input can have a thousand long column names: only ordinary headers are kept
    if len(names) <= 64 and sum(map(len, names)) <= 2048:
        return _remembered_plan(names)
    return _make_plan(names)


@lru_cache(maxsize=256)
def _remembered_plan(names: tuple[str, ...]) -> _Plan:
    return _make_plan(names)


def _make_plan(names: tuple[str, ...]) -> _Plan:
    present = set(names)

    def having(keys: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(k for k in keys if k in present)

    port, text, host, time = (having(k) for k in (_PORT_KEYS, _TEXT_KEYS, _HOST_KEYS, _TIME_KEYS))
    others = tuple(n for n in names if n not in _ADDRESS_KEYS)
    sole = {keys[0] for keys in (port, text, host, time) if len(keys) == 1}
    return _Plan(
        ip=having(_IP_KEYS[:-1]),
        host_is_ip="host" in present,
        port=port,
        text=text,
        host=host,
        time=time,
        others=others,
        lean=tuple(n for n in others if n not in sole),
        service="service" in present or "product" in present,
    )


_short_column = lru_cache(maxsize=4096)(_key)


def _column(name: str) -> str:
    return _short_column(name) if len(name) <= 64 else _key(name)


def _filled(value: object) -> str | None:
    """``_scalar(value)`` when it is not empty: a CSV cell is text already."""
    return (value or None) if type(value) is str else (_scalar(value) or None)


def _present(value: object) -> bool:
    """``bool(_filled(value))``, without writing a number out as text."""
    kind = type(value)
    if kind is str:
        return bool(value)
    return kind is int or bool(_scalar(value))


def _finding_text(value: object) -> str:
    """``_text(value, MAX_TEXT)``: a scanner repeats its few finding texts on every line."""
    if type(value) is not str or len(value) > 256:
        return _text(value, MAX_TEXT)
    known = _texts.get(value)
    if known is None:
        if len(_texts) >= _MAX_CACHED:
            _texts.clear()
        known = _texts[value] = _text(value, MAX_TEXT)
    return known


_texts: dict[str, str] = {}


def _remembered(value: object, read: Callable[[object], _T], into: dict[object, _T]) -> _T:
    """``read(value)``, kept for short texts and plain integers (ports and times repeat)."""
    kind = type(value)
    if not (kind is int or (kind is str and len(value) <= 64)):  # type: ignore[arg-type]
        return read(value)
    if value in into:
        return into[value]
    if len(into) >= _MAX_CACHED:
        into.clear()
    done = into[value] = read(value)  # what raises is never kept
    return done


def _read_port(value: object) -> int | None:
    return _port(_scalar(value))


_ports: dict[object, int | None] = {}
_times: dict[object, datetime | None] = {}


def _generic(record: Mapping[str, object], lineno: int, default: str) -> list[InputItem]:
    """A CSV row or JSON object with ip/port/finding/hostname/observed_at and extra columns."""
    if len(record) <= 64:
        names = tuple(record)
        if sum(map(len, names)) <= 2048:
            # the objects of one file share their keys: their columns are worked out once
            columns, plan = _layout(names)
            values = tuple(record.values())
            return _finding({name: values[i] for name, i in columns}, plan, default)
    fields: dict[str, object] = {}
    for name, value in itertools.islice(record.items(), _MAX_FIELDS):
        fields.setdefault(_column(name), value)
    return _finding(fields, _plan(tuple(fields)), default)


@lru_cache(maxsize=256)
def _layout(names: tuple[str, ...]) -> tuple[tuple[tuple[str, int], ...], _Plan]:
    """Each column of an object with keys ``names``: its normalised name and where its value is."""
    columns: dict[str, int] = {}
    for index, name in enumerate(names):
        columns.setdefault(_column(name), index)
    return tuple(columns.items()), _make_plan(tuple(columns))


def _finding(fields: dict[str, object], plan: _Plan, default: str) -> list[InputItem]:
    ip_text = None
    ip_key = None
    for key in plan.ip:
        ip_text = _filled(fields[key])
        if ip_text:
            ip_key = key
            break
    else:
        ip_text = _filled(fields["host"]) if plan.host_is_ip else None
        if not ip_text:
            raise _Bad("no IP address (expected an ip column)")
        ip_key = "host"
    ip = _ip(ip_text)
    port_key = None
    port = None
    for key in plan.port:
        if _present(fields[key]):
            port_key = key
            port = _remembered(fields[key], _read_port, _ports)
            break
    text_key = None
    text = default
    for key in plan.text:
        cleaned = _finding_text(fields[key])
        if cleaned:
            text_key, text = key, cleaned
            break
    hosts = [k for k in plan.host if k != ip_key] if plan.host else []
    host_key = None
    for key in hosts:
        if _has_control(fields[key]):
            raise _Bad(f"{key} {_shown(str(fields[key]))} contains control characters")
    for key in hosts:
        if _hostname(fields[key]):
            host_key = key
            break
    observed = None
    time_key = None
    for key in plan.time:
        if _present(fields[key]):
            time_key = key
            observed = _remembered(fields[key], _time, _times)
            break
    extra: tuple[tuple[str, str], ...] = ()
    lean = (
        (text_key is not None or not plan.text)
        and (host_key is not None or not hosts)
        and (observed is not None or not plan.time)
    )
    others = plan.lean if lean else plan.others
    if others:
        used = {ip_key, port_key, text_key, host_key}
        if observed is not None:
            used.add(time_key)
        extras = _Extras()
        for name in others:
            if name in used:
                continue
            value = fields[name]
            if name == "extra" and isinstance(value, dict):
                for sub, subvalue in itertools.islice(value.items(), MAX_EXTRAS):
                    extras.add(str(sub), subvalue)
            else:
                extras.add(name, value)
        extra = extras.pairs()
    service = None
    if plan.service:
        service = _service(_scalar(fields.get("service")), _scalar(fields.get("product")))
    return [
        Finding(
            ip=ip,
            text=text,
            port=port,
            hostname=_hostname(fields[host_key]) if host_key else None,
            observed_at=observed,
            extra=extra,
            hints=_hints((fields[k], f"input {k}") for k in hosts) if hosts else (),
            service=service,
        )
    ]


class CsvRows:
    """Generic CSV rows as records: the columns' names are worked out once, from the header.

    A row holds the first cell of each distinct column name, as ``_generic`` would make of
    ``{name: cell}`` (the header's names being normalised twice, as the readers always did).
    """

    def __init__(self, header: list[str]) -> None:
        first: dict[str, int] = {}
        for index, name in enumerate(header):
            first.setdefault(name, index)
        columns: dict[str, int] = {}
        for name, index in itertools.islice(first.items(), _MAX_FIELDS):
            columns.setdefault(_column(name), index)
        self._columns = tuple(columns.items())
        self._width = max(columns.values(), default=-1) + 1
        self._plan = _make_plan(tuple(columns))

    def __call__(self, row: list[str], default: str) -> list[InputItem]:
        if len(row) >= self._width:
            fields: dict[str, object] = {name: row[i] for name, i in self._columns}
            return _finding(fields, self._plan, default)
        # a short row has only the columns it reaches
        fields = {name: row[i] for name, i in self._columns if i < len(row)}
        return _finding(fields, _plan(tuple(fields)), default)
