"""JSON Lines: generic records, nuclei results and zgrab2 results."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping

from ..models import Finding
from .base import (
    _MAX_CERT_NAMES,
    MAX_TEXT,
    InputItem,
    InputProblem,
    _Bad,
    _clean,
    _Extras,
    _hints,
    _host_port,
    _hostname,
    _ip,
    _Line,
    _port,
    _safe_url,
    _scalar,
    _service,
    _text,
    _time,
)
from .lines import (
    _load_json,
    _too_long,
)

# --------------------------------------------------------------------------- JSON


__all__: list[str] = []  # internal: the package (notifier.intake) is the surface

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
