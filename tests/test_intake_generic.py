"""The generic CSV/JSON record reader's per-header plans give what reading every key gave.

``reference`` is the reader as it was before column plans: every candidate key looked up in
every record. Random headers (duplicates, spellings that normalise alike, short rows) and
random values (empty, blank, numbers, booleans, objects, bad names, bad times) must give the
same findings or the same problem from both.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Mapping

import pytest

from notifier.intake.base import (
    MAX_EXTRAS,
    MAX_TEXT,
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
from notifier.intake.generic import CsvRows, _generic
from notifier.intake.lines import _HOST_KEYS, _IP_KEYS, _PORT_KEYS, _TEXT_KEYS, _TIME_KEYS, _key
from notifier.models import Finding


def reference(record: Mapping[str, object], default: str) -> list[Finding]:
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
    host_key = next((k for k in _HOST_KEYS if k != ip_key and _hostname(fields.get(k))), None)
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


NAMES = ["ip", "IP", " ip ", "ip-address", "addr", "host", "Host", "hostname", "fqdn", "rdns",
         "port", "dst_port", "finding", "text", "tag", "description", "timestamp", "time",
         "first_seen", "asn", "service", "product", "extra", "\ufeffip", '"port"',
         "Seen At"]  # fmt: skip
TEXTS = ["", " ", "192.0.2.7", "2001:db8::5", "10.0.0.300", "db.example.org", "*.example.org",
         "bad name!", "x\x07y", "80", "0", "70000", "2025-01-11T15:35:00Z", "1736609700",
         "yesterday", "Redis without auth", " " * 900, "ssh", "http", "\t"]  # fmt: skip
VALUES: list[object] = [*TEXTS, 443, 0, 1736609700, 1.5, True, False, None, {"a": "b"}, ["x"]]


def outcome(read: Callable[..., list[Finding]], *args: object) -> object:
    try:
        return read(*args)
    except _Bad as exc:
        return f"problem: {exc}"


@pytest.mark.parametrize("seed", range(10))
def test_csv_rows_read_as_before(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(150):
        header = [_key(n) for n in rng.sample(NAMES, rng.randrange(1, 9))]
        if rng.random() < 0.3:
            header.append(rng.choice(header))  # a repeated column
        rows = CsvRows(header)
        for _ in range(10):
            row = [rng.choice(TEXTS) for _ in range(rng.randrange(1, len(header) + 2))]
            record: dict[str, str] = {}
            for name, cell in zip(header, row, strict=False):
                record.setdefault(name, cell)
            ours = outcome(rows, row, "open")
            assert ours == outcome(reference, record, "open"), (header, row)


@pytest.mark.parametrize("seed", range(10))
def test_json_objects_read_as_before(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(1500):
        record = {n: rng.choice(VALUES) for n in rng.sample(NAMES, rng.randrange(1, 9))}
        if rng.random() < 0.05:
            record.update({f"x{i}": "v" for i in range(70)})  # past the remembered layouts
        ours = outcome(_generic, record, 1, "open")
        assert ours == outcome(reference, record, "open"), record
