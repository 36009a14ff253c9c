"""The sandbox nameserver's zone: its records, written as in a zone file, and the authoritative
answer to a question (CNAME chains followed, NXDOMAIN only for names with nothing below them),
packed once into wire bytes (``dnswire``) for the fast path."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import cast

from dnslib import AAAA, CNAME, MX, PTR, QTYPE, RCODE, RR, TXT, A, DNSRecord

from .dnswire import WireTable

__all__ = ["RecordData", "Zone", "ZoneData", "normalise", "reverse_name"]

# one record value, in zone-file style: "127.0.0.2", "10 mail.example", "0 ." (null MX), or an
# MX as (preference, exchange); a TXT value given as a sequence is one record of several strings
RecordData = str | tuple[int, str] | Sequence[str]
ZoneData = Mapping[str, Mapping[str, RecordData | Sequence[RecordData]]]

_SUPPORTED = ("A", "AAAA", "PTR", "MX", "TXT", "CNAME")
_MAX_CNAME_CHAIN = 8


def normalise(name: str) -> str:
    return name.strip().rstrip(".").lower()


def reverse_name(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer


class Zone:
    """Records by owner name, each as (QTYPE code, dnslib rdata)."""

    def __init__(self, zone: ZoneData | None = None, *, ttl: int = 60) -> None:
        self.ttl = ttl
        self.records: dict[str, list[tuple[int, object]]] = {}
        self._table: WireTable | None = None
        for name, records in (zone or {}).items():
            for rtype, values in records.items():
                for value in self._values(rtype, values):
                    self.add(name, rtype, value)

    @staticmethod
    def _values(rtype: str, values: RecordData | Sequence[RecordData]) -> list[RecordData]:
        if isinstance(values, str):
            return [values]
        if rtype.upper() == "MX" and isinstance(values, tuple) and isinstance(values[0], int):
            return [cast(tuple[int, str], values)]
        return list(cast(Sequence[RecordData], values))

    def add(self, name: str, rtype: str, value: RecordData) -> None:
        """Add one record; ``value`` is written as in a zone file (see ``RecordData``)."""
        kind = rtype.upper()
        rdata: object
        if kind == "A":
            rdata = A(str(ipaddress.IPv4Address(str(value))))
        elif kind == "AAAA":
            rdata = AAAA(str(ipaddress.IPv6Address(str(value))))
        elif kind in ("PTR", "CNAME"):
            target = str(value).strip()
            rdata = PTR(target) if kind == "PTR" else CNAME(target)
        elif kind == "MX":
            if isinstance(value, tuple):
                preference, exchange = int(value[0]), str(value[1])
            else:
                pref_text, _, exchange = str(value).strip().partition(" ")
                preference = int(pref_text)
            exchange = exchange.strip() or "."
            rdata = MX(exchange, preference)
        elif kind == "TXT":
            strings = [value] if isinstance(value, str) else [str(v) for v in value]
            chunks: list[bytes] = []
            for text in strings:
                raw = text.encode()
                # a character-string holds at most 255 bytes; longer text is split, as zone files do
                chunks.extend(raw[i : i + 255] for i in range(0, len(raw), 255))
                if not raw:
                    chunks.append(b"")
            rdata = TXT(chunks)
        else:
            raise ValueError(f"unsupported record type {rtype!r} (supported: {_SUPPORTED})")
        self.records.setdefault(normalise(name), []).append((getattr(QTYPE, kind), rdata))
        self._table = None

    def add_host(self, name: str, ip: str, *, ptr: bool = True) -> None:
        """An A or AAAA record for ``name``, and (unless ``ptr=False``) the PTR back to it."""
        address = ipaddress.ip_address(ip)
        self.add(name, "A" if address.version == 4 else "AAAA", str(address))
        if ptr:
            self.add_ptr(str(address), name)

    def add_ptr(self, ip: str, name: str) -> None:
        """A PTR record for ``ip`` (in in-addr.arpa or ip6.arpa) pointing at ``name``."""
        self.add(reverse_name(ip), "PTR", name.rstrip(".") + ".")

    def remove(self, name: str, rtype: str | None = None) -> None:
        """Forget ``name``'s records (of one type, or all)."""
        key = normalise(name)
        self._table = None
        if rtype is None:
            self.records.pop(key, None)
            return
        code = getattr(QTYPE, rtype.upper())
        kept = [item for item in self.records.get(key, []) if item[0] != code]
        if kept:
            self.records[key] = kept
        else:
            self.records.pop(key, None)

    def _has_descendants(self, name: str) -> bool:
        suffix = "." + name
        return any(key.endswith(suffix) for key in self.records)

    def answer(self, request: DNSRecord) -> DNSRecord:
        """The authoritative reply to ``request`` from the zone (misbehaviour aside)."""
        reply = request.reply()
        reply.header.ra = 0
        reply.header.aa = 1
        if request.header.opcode != 0:
            reply.header.rcode = RCODE.NOTIMP
            return reply
        if not request.questions:
            reply.header.rcode = RCODE.FORMERR
            return reply
        question = request.q
        qtype = int(question.qtype)
        current = normalise(str(question.qname))
        owner = question.qname
        for _hop in range(_MAX_CNAME_CHAIN):
            records = self.records.get(current)
            if records is None:
                if owner is question.qname and not self._has_descendants(current):
                    reply.header.rcode = RCODE.NXDOMAIN
                break
            wanted = [r for r in records if qtype in (r[0], QTYPE.ANY)]
            if wanted:
                for rtype, rdata in wanted:
                    reply.add_answer(RR(owner, rtype, rdata=rdata, ttl=self.ttl))
                break
            aliases = [r for r in records if r[0] == QTYPE.CNAME]
            if not aliases or qtype == QTYPE.CNAME:
                break  # the name exists without this type: NOERROR, no data
            reply.add_answer(RR(owner, QTYPE.CNAME, rdata=aliases[0][1], ttl=self.ttl))
            owner = aliases[0][1].label  # type: ignore[attr-defined]
            current = normalise(str(owner))
        return reply

    def table(self) -> WireTable:
        """Pack every answer of the zone as it is now (done on the first query otherwise)."""
        if self._table is None:
            # a snapshot: a test may add records from another thread meanwhile
            records = dict(self.records)
            types = {name: sorted({t for t, _ in items}) for name, items in records.items()}
            supported = [getattr(QTYPE, kind) for kind in _SUPPORTED]
            self._table = WireTable(self.answer, records, types, supported)
        return self._table

    def listing(self) -> Iterable[tuple[str, str, str]]:
        """Every record as (name, type, value) text, for debugging and the demo's listing."""
        for name, items in sorted(self.records.items()):
            for rtype, rdata in items:
                yield name, QTYPE.get(rtype, str(rtype)), str(rdata)
