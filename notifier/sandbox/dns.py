"""A loopback authoritative nameserver: real DNS over UDP and TCP for tests and the demo.

The server answers from an in-memory zone (A, AAAA, PTR, MX, TXT, CNAME), says NXDOMAIN for names
it does not know, logs every query, and can be told to misbehave per name (answer late, SERVFAIL,
or never answer). Replies come from wire bytes packed once per zone (``dnswire``), and ``latency``
delays every answer by scheduling it, not by holding anything. It runs on the caller's event loop,
so starting and stopping never block it::

    server = DNSServer({"db.example": {"A": "127.0.0.2", "MX": "10 mail.example"}})
    server.add_host("www.example", "127.0.0.3")          # A + PTR
    server.misbehave("slow.example", delay=0.2)
    await server.start()
    settings = Settings.from_mapping({"dns": {"nameservers": [server.nameserver]}})
    ...
    await server.stop()

``own_process=True`` serves a snapshot of the zone (taken at ``start``) from a child process
instead, so that a benchmark's client and nameserver do not share one core; it keeps no query
log, only counts (``answered``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import pickle  # noqa: S403 - the zone goes to our own child process over a pipe
import socket
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import cast

from dnslib import AAAA, CNAME, MX, PTR, QTYPE, RCODE, RR, TXT, A, DNSRecord

from .dnswire import WireTable

__all__ = ["DNSServer", "LoggedQuery", "Misbehaviour", "ZoneData", "RecordData"]

# one record value, in zone-file style: "127.0.0.2", "10 mail.example", "0 ." (null MX), or an
# MX as (preference, exchange); a TXT value given as a sequence is one record of several strings
RecordData = str | tuple[int, str] | Sequence[str]
ZoneData = Mapping[str, Mapping[str, RecordData | Sequence[RecordData]]]

_SUPPORTED = ("A", "AAAA", "PTR", "MX", "TXT", "CNAME")
_MAX_CNAME_CHAIN = 8
_TCP_IDLE = 10.0  # seconds a TCP client may keep a connection open without asking anything
_RECEIVE_BUFFER = 8 << 20  # bytes (the kernel caps it at net.core.rmem_max)
_BIND_ATTEMPTS = 20  # UDP and TCP must share one port; another process may hold it over TCP


def _normalise(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _reverse_name(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer


@dataclass(frozen=True, slots=True)
class LoggedQuery:
    """One question the server received, and what it did about it."""

    name: str  # lower case, without the trailing dot
    rtype: str  # "A", "PTR", ...
    transport: str  # "udp" | "tcp"
    outcome: str  # "NOERROR", "NXDOMAIN", "SERVFAIL", "truncated", "dropped"


@dataclass(frozen=True, slots=True)
class Misbehaviour:
    """How the server mistreats questions about one name."""

    delay: float = 0.0  # seconds to wait before answering
    servfail: bool = False  # answer SERVFAIL instead of the data
    drop: bool = False  # never answer (the client times out)


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer):
        self._server = server

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._server._on_datagram(data, addr)


class DNSServer:
    """An authoritative nameserver on 127.0.0.1 (UDP and TCP on one port, chosen by the OS)."""

    def __init__(
        self,
        zone: ZoneData | None = None,
        *,
        host: str = "127.0.0.1",
        ttl: int = 60,
        latency: float = 0.0,
        own_process: bool = False,
    ):
        self.host = host
        self.ttl = ttl
        self.latency = latency  # seconds added to every answer
        self.own_process = own_process
        self.log_queries = True
        self.queries: list[LoggedQuery] = []
        self.answered = 0  # replies sent (own process: known after stop)
        self._table: WireTable | None = None
        self._child: asyncio.subprocess.Process | None = None
        self._records: dict[str, list[tuple[int, object]]] = {}
        self._misbehaviour: dict[str, Misbehaviour] = {}
        self._port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        for name, records in (zone or {}).items():
            for rtype, values in records.items():
                for value in self._values(rtype, values):
                    self.add(name, rtype, value)

    # -- the zone -----------------------------------------------------------------------------

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
        self._records.setdefault(_normalise(name), []).append((getattr(QTYPE, kind), rdata))
        self._table = None

    def add_host(self, name: str, ip: str, *, ptr: bool = True) -> None:
        """An A or AAAA record for ``name``, and (unless ``ptr=False``) the PTR back to it."""
        address = ipaddress.ip_address(ip)
        self.add(name, "A" if address.version == 4 else "AAAA", str(address))
        if ptr:
            self.add_ptr(str(address), name)

    def add_ptr(self, ip: str, name: str) -> None:
        """A PTR record for ``ip`` (in in-addr.arpa or ip6.arpa) pointing at ``name``."""
        self.add(_reverse_name(ip), "PTR", name.rstrip(".") + ".")

    def remove(self, name: str, rtype: str | None = None) -> None:
        """Forget ``name``'s records (of one type, or all)."""
        key = _normalise(name)
        self._table = None
        if rtype is None:
            self._records.pop(key, None)
            return
        code = getattr(QTYPE, rtype.upper())
        kept = [item for item in self._records.get(key, []) if item[0] != code]
        if kept:
            self._records[key] = kept
        else:
            self._records.pop(key, None)

    def misbehave(
        self, name: str, *, delay: float = 0.0, servfail: bool = False, drop: bool = False
    ) -> None:
        """Mistreat questions about ``name`` (an IP means its reverse name; ``*`` means all)."""
        try:
            key = _reverse_name(name)
        except ValueError:
            key = _normalise(name) if name != "*" else "*"
        self._misbehaviour[key] = Misbehaviour(delay=delay, servfail=servfail, drop=drop)

    def behave(self, name: str | None = None) -> None:
        """Stop mistreating ``name`` (or every name)."""
        if name is None:
            self._misbehaviour.clear()
            return
        try:
            key = _reverse_name(name)
        except ValueError:
            key = _normalise(name) if name != "*" else "*"
        self._misbehaviour.pop(key, None)

    # -- where it listens ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("the DNS server is not started")
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def nameserver(self) -> str:
        """``host:port`` as ``Settings.dns.nameservers`` takes it."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def start(self) -> None:
        """Listen on UDP and TCP on one free port."""
        if self._udp is not None or self._child is not None:
            return
        if self.own_process:
            await self._start_child()
            return
        loop = asyncio.get_running_loop()
        last: OSError | None = None
        for _ in range(_BIND_ATTEMPTS):
            transport, _protocol = await loop.create_datagram_endpoint(
                lambda: _UDPProtocol(self), local_addr=(self.host, 0)
            )
            port = int(transport.get_extra_info("sockname")[1])
            try:
                self._tcp = await asyncio.start_server(self._on_tcp, self.host, port)
            except OSError as exc:
                transport.close()
                last = exc
                continue
            self._udp = transport
            self._port = port
            sock = transport.get_extra_info("socket")
            # a burst of hundreds of queries must queue, not be dropped, as at a real resolver
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)
            return
        raise OSError(f"no port free for both UDP and TCP on {self.host}: {last}")

    async def _start_child(self) -> None:
        state = (self._records, self._misbehaviour, self.ttl, self.latency, self.host)
        self._child = child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "notifier.sandbox.dnsproc",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdin is not None and child.stdout is not None
        data = pickle.dumps(state)
        child.stdin.write(len(data).to_bytes(8, "big") + data)
        await child.stdin.drain()
        line = await child.stdout.readline()
        if not line.strip().isdigit():
            await self.stop()
            raise OSError("the nameserver process did not start")
        self._port = int(line)

    async def stop(self) -> None:
        """Stop listening, drop pending answers and close open TCP connections."""
        child, self._child = self._child, None
        if child is not None and child.stdin is not None and child.stdout is not None:
            child.stdin.close()  # end of input: the child reports its counts and exits
            line = await child.stdout.readline()
            with contextlib.suppress(ValueError):
                self.answered = int(json.loads(line or b"{}").get("answered", 0))
            await child.wait()
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._tcp is not None:
            await self._tcp.wait_closed()
            self._tcp = None
        self._port = 0

    async def __aenter__(self) -> DNSServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- answering ----------------------------------------------------------------------------

    def _behaviour(self, name: str) -> Misbehaviour:
        return self._misbehaviour.get(name) or self._misbehaviour.get("*") or Misbehaviour()

    def _has_descendants(self, name: str) -> bool:
        suffix = "." + name
        return any(key.endswith(suffix) for key in self._records)

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
        current = _normalise(str(question.qname))
        owner = question.qname
        for _hop in range(_MAX_CNAME_CHAIN):
            records = self._records.get(current)
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
            current = _normalise(str(owner))
        return reply

    def _handle(self, data: bytes, transport: str) -> tuple[bytes | None, float]:
        """The reply's bytes (None: say nothing) and how long to wait before sending them."""
        if not self._misbehaviour:
            wire, outcome = self.prepare().reply(data)
            if wire is not None:
                self._answered(data, transport, outcome)
                return wire, self.latency
        wire, delay = self._slow(data, transport)
        return wire, delay + self.latency

    def prepare(self) -> WireTable:
        """Pack every answer of the zone as it is now (done on the first query otherwise)."""
        if self._table is None:
            # a snapshot: a test may add records from another thread meanwhile
            records = dict(self._records)
            types = {name: sorted({t for t, _ in items}) for name, items in records.items()}
            supported = [getattr(QTYPE, kind) for kind in _SUPPORTED]
            self._table = WireTable(self.answer, records, types, supported)
        return self._table

    def _answered(self, data: bytes, transport: str, outcome: str) -> None:
        self.answered += 1
        if not self.log_queries:
            return
        labels, at = [], 12
        while data[at]:
            labels.append(data[at + 1 : at + 1 + data[at]].decode("ascii", "replace").lower())
            at += data[at] + 1
        qtype = int.from_bytes(data[at + 1 : at + 3], "big")
        rtype = QTYPE.get(qtype, str(qtype))
        self.queries.append(LoggedQuery(".".join(labels), rtype, transport, outcome))

    def _slow(self, data: bytes, transport: str) -> tuple[bytes | None, float]:
        try:
            request = DNSRecord.parse(data)
        except Exception:  # garbage on the wire must not stop the server
            return None, 0.0
        if not request.questions:
            return bytes(self.answer(request).pack()), 0.0
        name = _normalise(str(request.q.qname))
        rtype = QTYPE.get(request.q.qtype, str(request.q.qtype))
        behaviour = self._behaviour(name)
        if behaviour.drop:
            if self.log_queries:
                self.queries.append(LoggedQuery(name, rtype, transport, "dropped"))
            return None, 0.0
        if behaviour.servfail:
            reply = request.reply()
            reply.header.ra = 0
            reply.header.rcode = RCODE.SERVFAIL
        else:
            reply = self.answer(request)
        outcome = RCODE.get(reply.header.rcode, str(reply.header.rcode))
        wire = bytes(reply.pack())
        if transport == "udp":
            limit = 512
            for extra in request.ar:
                if extra.rtype == QTYPE.OPT:
                    limit = max(512, int(extra.rclass))
            if len(wire) > limit:
                # too big for this datagram: an empty, truncated reply sends the client to TCP
                reply.rr = []
                reply.header.tc = 1
                wire = bytes(reply.pack())
                outcome = "truncated"
        self.answered += 1
        if self.log_queries:
            self.queries.append(LoggedQuery(name, rtype, transport, outcome))
        return wire, behaviour.delay

    def _on_datagram(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        wire, delay = self._handle(data, "udp")
        if wire is None or self._udp is None:
            return
        if delay > 0:
            # a timer, not a task per answer: thousands may be waiting at once (once stopped,
            # the timers left find no transport and send nothing)
            asyncio.get_running_loop().call_later(delay, self._send, wire, addr)
        else:
            self._udp.sendto(wire, addr)

    def _send(self, wire: bytes, addr: tuple[str | int, ...]) -> None:
        if self._udp is not None:
            self._udp.sendto(wire, addr)

    async def _on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        try:
            while True:
                async with asyncio.timeout(_TCP_IDLE):
                    header = await reader.readexactly(2)
                    data = await reader.readexactly(int.from_bytes(header, "big"))
                wire, delay = self._handle(data, "tcp")
                if wire is None:
                    continue
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(len(wire).to_bytes(2, "big") + wire)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    def records(self) -> Iterable[tuple[str, str, str]]:
        """Every record as (name, type, value) text, for debugging and the demo's listing."""
        for name, items in sorted(self._records.items()):
            for rtype, rdata in items:
                yield name, QTYPE.get(rtype, str(rtype)), str(rdata)
