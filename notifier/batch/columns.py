"""A batch's findings as columns of machine integers, so that a million lines fit in memory.

Addresses, texts, host names, time zones and extra fields are interned (kept once, referred to
by number); times are microseconds since the epoch. A finding is rebuilt only when a message
about it is composed.
"""

from __future__ import annotations

from array import array
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from ..models import Finding, IPAddress

__all__ = ["Columns", "Interned"]

_NO_TIME = -(2**63)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


class Interned:
    """Values kept once, referred to by number (0 is the empty value)."""

    def __init__(self, empty: Any) -> None:
        self.values: list[Any] = [empty]
        self._ids: dict[Any, int] = {empty: 0}

    def id(self, value: Any) -> int:
        found = self._ids.get(value)
        if found is None:
            found = self._ids[value] = len(self.values)
            self.values.append(value)
        return found


class Columns:
    """Distinct addresses (with the host name to resolve each with), and the findings."""

    def __init__(self) -> None:
        self.ips: list[IPAddress] = []
        self.ip_ids: dict[IPAddress, int] = {}
        self.ip_host = array("I")
        self.strings = Interned("")
        self._zones = Interned(None)
        self._extras = Interned(())
        # per finding, one column each
        self.row_ip = array("I")
        self.row_port = array("i")
        self.row_text = array("I")
        self._row_host = array("I")
        self._row_time = array("q")
        self._row_zone = array("H")
        self._row_extra = array("I")
        self._seen: set[int] = set()

    def __len__(self) -> int:
        return len(self.row_ip)

    def address(self, ip: IPAddress, hostname: str | None) -> int:
        """The number of a new distinct address."""
        ip_id = self.ip_ids[ip] = len(self.ips)
        self.ips.append(ip)
        self.ip_host.append(self.strings.id(hostname or ""))
        return ip_id

    def add(self, ip_id: int, finding: Finding) -> bool:
        """Keep ``finding`` about address ``ip_id``; False when the batch already has it."""
        port = -1 if finding.port is None else finding.port
        text = self.strings.id(finding.text)
        identity = (ip_id << 64) | ((port + 1) << 32) | text
        if identity in self._seen:
            return False
        self._seen.add(identity)
        self.row_ip.append(ip_id)
        self.row_port.append(port)
        self.row_text.append(text)
        self._row_host.append(self.strings.id(finding.hostname or ""))
        moment = finding.observed_at
        if moment is None:
            self._row_time.append(_NO_TIME)
            self._row_zone.append(0)
        elif moment.tzinfo is None:
            self._row_time.append((moment - _NAIVE_EPOCH) // _MICROSECOND)
            self._row_zone.append(0)
        else:
            self._row_time.append((moment - _EPOCH) // _MICROSECOND)
            self._row_zone.append(self._zones.id(moment.tzinfo))
        self._row_extra.append(self._extras.id(tuple(finding.extra)))
        return True

    def sealed(self) -> None:
        """No more findings: the duplicate check's memory goes back before delivery."""
        self._seen = set()

    def _time(self, index: int) -> datetime | None:
        micros = self._row_time[index]
        if micros == _NO_TIME:
            return None
        zone: tzinfo | None = self._zones.values[self._row_zone[index]]
        if zone is None:
            return _NAIVE_EPOCH + micros * _MICROSECOND
        return (_EPOCH + micros * _MICROSECOND).astimezone(zone)

    def finding(self, index: int) -> Finding:
        port = self.row_port[index]
        return Finding(
            self.ips[self.row_ip[index]],
            self.strings.values[self.row_text[index]],
            port=None if port < 0 else port,
            hostname=self.strings.values[self._row_host[index]] or None,
            observed_at=self._time(index),
            extra=self._extras.values[self._row_extra[index]],
        )

    def hostname(self, ip_id: int) -> str:
        return str(self.strings.values[self.ip_host[ip_id]])
