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
import json
import pickle  # noqa: S403 - the zone goes to our own child process over a pipe
import socket
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType

from dnslib import QTYPE, RCODE, DNSRecord

from .dnswire import WireTable
from .dnszone import RecordData, Zone, ZoneData, normalise, reverse_name

__all__ = ["DNSServer", "LoggedQuery", "Misbehaviour", "ZoneData", "RecordData"]

_TCP_IDLE = 10.0  # seconds a TCP client may keep a connection open without asking anything
_RECEIVE_BUFFER = 8 << 20  # bytes (the kernel caps it at net.core.rmem_max)
_BIND_ATTEMPTS = 20  # UDP and TCP must share one port; another process may hold it over TCP


@dataclass(frozen=True, slots=True)
class LoggedQuery:
    """One question the server received, and what it did about it."""

    name: str  # lower case, without the trailing dot
    rtype: str  # "A", "PTR", ...
    transport: str  # "udp" | "tcp"
    outcome: str  # "NOERROR", "NXDOMAIN", "SERVFAIL", "truncated", "dropped"
    at: float = field(default_factory=time.monotonic)  # when it came (tests' timelines)


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
        self.zone = Zone(zone, ttl=ttl)
        self.latency = latency  # seconds added to every answer
        self.own_process = own_process
        self.log_queries = True
        self.queries: list[LoggedQuery] = []
        self.answered = 0  # replies sent (own process: known after stop)
        self._child: asyncio.subprocess.Process | None = None
        self._misbehaviour: dict[str, Misbehaviour] = {}
        self._port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    # -- the zone -----------------------------------------------------------------------------

    def add(self, name: str, rtype: str, value: RecordData) -> None:
        """Add one record; ``value`` is written as in a zone file (see ``RecordData``)."""
        self.zone.add(name, rtype, value)

    def add_host(self, name: str, ip: str, *, ptr: bool = True) -> None:
        """An A or AAAA record for ``name``, and (unless ``ptr=False``) the PTR back to it."""
        self.zone.add_host(name, ip, ptr=ptr)

    def add_ptr(self, ip: str, name: str) -> None:
        """A PTR record for ``ip`` (in in-addr.arpa or ip6.arpa) pointing at ``name``."""
        self.zone.add_ptr(ip, name)

    def remove(self, name: str, rtype: str | None = None) -> None:
        """Forget ``name``'s records (of one type, or all)."""
        self.zone.remove(name, rtype)

    def misbehave(
        self, name: str, *, delay: float = 0.0, servfail: bool = False, drop: bool = False
    ) -> None:
        """Mistreat questions about ``name`` (an IP means its reverse name; ``*`` means all)."""
        try:
            key = reverse_name(name)
        except ValueError:
            key = normalise(name) if name != "*" else "*"
        self._misbehaviour[key] = Misbehaviour(delay=delay, servfail=servfail, drop=drop)

    def behave(self, name: str | None = None) -> None:
        """Stop mistreating ``name`` (or every name)."""
        if name is None:
            self._misbehaviour.clear()
            return
        try:
            key = reverse_name(name)
        except ValueError:
            key = normalise(name) if name != "*" else "*"
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
        state = (self.zone.records, self._misbehaviour, self.zone.ttl, self.latency, self.host)
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

    def answer(self, request: DNSRecord) -> DNSRecord:
        """The authoritative reply to ``request`` from the zone (misbehaviour aside)."""
        return self.zone.answer(request)

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
        return self.zone.table()

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
        name = normalise(str(request.q.qname))
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
        return self.zone.listing()
