"""DNS for the bulk path: c-ares (``pycares`` through ``aiodns``) instead of dnspython.

dnspython spends about 0.3 ms of CPU on each query (building and parsing messages in Python);
c-ares does it in C for about a third of that, which is what bounds a batch of tens of thousands
of addresses on one core. A batch puts a ``BulkResolver`` into the lookup context
(``LookupContext.bulk_dns``) for its run; reverse DNS and forward confirmation, the host names
of HTTP connections and WHOIS servers, and the role mailbox's MX then ask it; without one
(``notify send``, ``resolve``) they use dnspython. Answers and failures come back in
dnspython's terms (its exception classes, the answer's values and its text), so the sources
have one set of rules either way.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import aiodns
import aiodns.error
import dns.exception
import dns.resolver
import pycares

from ..config import DNSSettings

__all__ = ["BulkResolver", "BulkAnswer"]

_TYPES = {"A": 1, "AAAA": 28, "PTR": 12, "MX": 15}
# c-ares status codes (ares.h)
_NODATA, _SERVFAIL, _NOTFOUND, _REFUSED, _TIMEOUT, _CONNREFUSED = 1, 3, 4, 6, 12, 11


@dataclass(frozen=True, slots=True)
class BulkAnswer:
    """The values of the asked type (addresses; PTR names without the final dot; MX as
    dnspython writes them, ``10 mx.example.``), and the answer as zone-file text (what
    evidence hashes)."""

    values: tuple[str, ...]
    text: str


class _LoopResolver(aiodns.DNSResolver):
    """aiodns with c-ares's sockets watched by this event loop (its fallback mode) rather than
    by c-ares's own thread: each answer then costs no hand-over between threads, 42 instead
    of 70 µs of CPU a query here."""

    def _make_channel(self, **kwargs: Any) -> tuple[bool, pycares.Channel]:
        resolver = weakref.ref(self)

        def watch(fd: int, readable: bool, writable: bool) -> None:
            this = resolver()
            if this is not None:
                this._sock_state_cb(fd, readable, writable)

        return False, pycares.Channel(sock_state_cb=watch, timeout=self._timeout, **kwargs)


class BulkResolver:
    """Queries through one c-ares channel to the configured nameservers (or the system's).

    ``close`` ends the channel once no query is on it. A query that comes after (an HTTP
    connection of a lookup that outlives the batch's lookups, which took this resolver before
    it closed) opens a channel again for as long as it needs one: it is answered, not failed.
    """

    def __init__(self, settings: DNSSettings) -> None:
        self._servers = [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in settings.endpoints()]
        self._timeout = settings.timeout
        self._resolver: _LoopResolver | None = self._channel()
        self._active = 0  # queries on the channel
        self._closed = False

    def _channel(self) -> _LoopResolver:
        # two tries inside the configured timeout (c-ares doubles the wait for the second): a
        # datagram lost under load is asked again
        return _LoopResolver(
            nameservers=self._servers or None, timeout=self._timeout / 3, tries=2, rotate=False
        )

    async def query(self, name: str, rdtype: str) -> BulkAnswer:
        """Records of ``rdtype`` (A, AAAA, PTR or MX) for ``name``; dnspython's exceptions on
        failure (NXDOMAIN, NoAnswer, Timeout, NoNameservers, DNSException)."""
        if self._resolver is None:
            self._resolver = self._channel()
        resolver = self._resolver
        self._active += 1
        try:
            return await self._query(resolver, name, rdtype)
        finally:
            self._active -= 1
            if self._closed and not self._active:
                await self._end()

    async def _end(self) -> None:
        resolver, self._resolver = self._resolver, None
        if resolver is not None:
            await resolver.close()

    @staticmethod
    async def _query(resolver: _LoopResolver, name: str, rdtype: str) -> BulkAnswer:
        wanted = _TYPES[rdtype]
        try:
            # c-ares ends the query itself (two tries within the timeout, as set up above); a
            # timer of our own per query cost as much CPU as the query
            result = await resolver.query_dns(name, rdtype)
        except aiodns.error.DNSError as exc:
            code = exc.args[0] if exc.args else None
            if code == _NOTFOUND:
                raise dns.resolver.NXDOMAIN() from None  # type: ignore[no-untyped-call]
            if code == _NODATA:
                raise dns.resolver.NoAnswer() from None  # type: ignore[no-untyped-call]
            if code == _TIMEOUT:
                raise dns.exception.Timeout() from None  # type: ignore[no-untyped-call]
            if code in (_SERVFAIL, _REFUSED, _CONNREFUSED):
                raise dns.resolver.NoNameservers() from None  # type: ignore[no-untyped-call]
            raise dns.exception.DNSException(str(exc)) from None  # type: ignore[no-untyped-call]
        values: list[str] = []
        lines: list[str] = []
        for record in result.answer:
            if record.type != wanted:
                continue  # the CNAMEs that led there
            data = record.data
            if isinstance(data, pycares.MXRecordData):
                # the null MX of RFC 7505 comes as an empty name: "0 ." as dnspython has it
                value = shown = f"{data.priority} {str(data.exchange).rstrip('.')}."
            else:
                value = str(getattr(data, "dname", None) or getattr(data, "addr", "")).rstrip(".")
                shown = f"{value}." if wanted == _TYPES["PTR"] else value
            values.append(value)
            lines.append(f"{record.name.rstrip('.')}. {record.ttl} IN {rdtype} {shown}")
        if not values:
            raise dns.resolver.NoAnswer()  # type: ignore[no-untyped-call]
        return BulkAnswer(tuple(values), "\n".join(lines))

    async def close(self) -> None:
        self._closed = True
        if not self._active:
            await self._end()
