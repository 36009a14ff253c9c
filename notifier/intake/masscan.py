"""masscan ``-oJ`` and ``-oL``: one finding per open port or banner service."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime

from ..models import Finding, IPAddress
from .base import (
    _MAX_ITEMS_PER_RECORD,
    InputItem,
    InputProblem,
    _Bad,
    _clean,
    _Extras,
    _ip,
    _Line,
    _port,
    _scalar,
    _service,
    _shown,
    _text,
    _time,
)
from .lines import _MASSCAN_FINISHED, _MASSCAN_LIST, _load_json, _too_long

__all__: list[str] = []  # internal: the package (notifier.intake) is the surface


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
