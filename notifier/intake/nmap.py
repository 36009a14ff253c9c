"""nmap ``-oX``: read as the document streams by; script output is never read."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

import defusedxml.ElementTree as defused_et
from defusedxml import DefusedXmlException

from ..models import Finding, IPAddress
from .base import (
    _MAX_PENDING_PORTS,
    _XML_MAX_DEPTH,
    _XML_MAX_QUIET,
    MAX_TEXT,
    InputItem,
    InputProblem,
    _Bad,
    _clean,
    _Extras,
    _hints,
    _hostname,
    _ip,
    _Line,
    _port,
    _service,
    _shown,
    _time,
)
from .lines import _too_long

# --------------------------------------------------------------------------- nmap XML


__all__: list[str] = []  # internal: the package (notifier.intake) is the surface


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
