"""A loopback SMTP server that records what it accepts and misbehaves on request.

It runs aiosmtpd's protocol in the caller's own event loop (no thread, port 0 bound directly),
so tests and ``notify demo`` read what it saw without locks. Per-recipient scripts choose each
reply: ``script={"a@x.org": ["451 4.3.0 Try again later", "250 OK"]}`` answers the first RCPT
for that address with 451 and the next with 250; every RCPT and every DATA naming the address
consumes the next scripted reply, and an exhausted script accepts. The reply ``DISCONNECT``
drops the connection instead of answering. ``"*"`` scripts every recipient without a script of
its own.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import secrets
import ssl
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any, Literal

from aiosmtpd.smtp import MISSING, AuthResult, Envelope, LoginPassword, Session
from aiosmtpd.smtp import SMTP as SMTPProtocol

from .web import SandboxCA

__all__ = ["SMTPServer", "ReceivedMessage", "DISCONNECT"]

DISCONNECT = "DISCONNECT"
_SERVER_NAME = "sandbox.smtp.test"


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One message the server accepted at end of DATA."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    mail_options: tuple[str, ...]
    raw: bytes
    message_id: str
    reply: str  # what the server answered, queue id included
    tls: bool
    auth_user: str | None
    at: float = field(default_factory=time.monotonic)  # end of DATA (benchmarks' timelines)


class _Handler:
    """aiosmtpd hooks: scripted replies, an optional delay, AUTH enforcement, recording."""

    def __init__(self, server: SMTPServer) -> None:
        self._server = server

    async def _pause(self) -> None:
        if self._server.delay:
            await asyncio.sleep(self._server.delay)

    def _next(self, address: str) -> str | None:
        script = self._server.script
        queue = script.get(address.lower())
        if queue is None:
            queue = script.get("*")
        return queue.popleft() if queue else None

    async def handle_EHLO(
        self,
        server: SMTPProtocol,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        await self._pause()
        session.host_name = hostname
        return responses

    async def handle_MAIL(
        self,
        server: SMTPProtocol,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        await self._pause()
        if self._server.username is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self,
        server: SMTPProtocol,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        await self._pause()
        reply = self._next(address)
        if reply == DISCONNECT:
            return _drop(server)
        if reply is not None and not reply.startswith("2"):
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return reply or "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTPProtocol, session: Session, envelope: Envelope) -> str:
        await self._pause()
        for address in envelope.rcpt_tos:
            reply = self._next(address)
            if reply == DISCONNECT:
                return _drop(server)
            if reply is not None and not reply.startswith("2"):
                return reply
        reply = f"250 2.0.0 OK: queued as {secrets.token_hex(5).upper()}"
        raw = envelope.original_content or b""
        # the header block alone: the parser reads everything it is given, a whole message
        # costs the benchmark's server more CPU than the sender spends on it
        head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0] + b"\r\n\r\n"
        headers = BytesHeaderParser(policy=compat32).parsebytes(head)
        ssl_info = session.ssl
        self._server.messages.append(
            ReceivedMessage(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                mail_options=tuple(envelope.mail_options),
                raw=raw,
                message_id=str(headers.get("Message-ID", "")).strip(),
                reply=reply,
                tls=bool(ssl_info) or self._server.security == "tls",
                auth_user=self._server.username if session.authenticated else None,
            )
        )
        return reply


def _drop(server: SMTPProtocol) -> str:
    if server.transport is not None:
        server.transport.close()
    # never reaches the client: the connection is already closing
    return "421 4.4.2 Connection dropped"


class SMTPServer:
    """An SMTP server on loopback, port 0, recording every message it accepts.

    ``security``: ``"none"``, ``"starttls"`` (STARTTLS offered and required before MAIL) or
    ``"tls"`` (implicit TLS), with a certificate from ``ca`` (a new ``SandboxCA`` if omitted).
    ``username``/``password``: AUTH PLAIN/LOGIN offered and required before MAIL. ``delay``:
    seconds before answering EHLO, MAIL, RCPT and DATA (a slow or silent server).
    ``size_limit``: bytes of message data accepted (552 beyond them; aiosmtpd's 32 MiB if 0).
    """

    def __init__(
        self,
        *,
        script: Mapping[str, Sequence[str]] | None = None,
        delay: float = 0.0,
        security: Literal["none", "starttls", "tls"] = "none",
        ca: SandboxCA | None = None,
        username: str | None = None,
        password: str | None = None,
        host: str = "127.0.0.1",
        size_limit: int = 0,
    ) -> None:
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        self.script: dict[str, deque[str]] = {}
        for address, replies in (script or {}).items():
            self.add_script(address, *replies)
        self.delay = delay
        self.security = security
        self.ca = ca or (SandboxCA() if security != "none" else None)
        self.username = username
        self._password = password
        self.host = host
        self.size_limit = size_limit
        self.messages: list[ReceivedMessage] = []
        self.connections = 0
        self._port = 0
        self._server: asyncio.Server | None = None
        self._protocols: set[SMTPProtocol] = set()
        self._handler = _Handler(self)
        self._tls: ssl.SSLContext | None = (
            self.ca.server_context([host, _SERVER_NAME]) if self.ca is not None else None
        )

    def __repr__(self) -> str:
        return f"<SMTPServer {self.security}://{self.host}:{self._port}>"

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("SMTPServer is not started")
        return self._port

    def add_script(self, address: str, *replies: str) -> None:
        """Queue more replies for ``address`` (``"*"``: every unscripted recipient)."""
        self.script.setdefault(address.lower(), deque()).extend(replies)

    def smtp_settings(self) -> dict[str, Any]:
        """The ``[smtp]`` section that points notifier at this server."""
        return {"host": self.host, "port": self.port, "security": self.security}

    def _authenticate(
        self,
        server: SMTPProtocol,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        if (
            self.username is not None
            and self._password is not None
            and isinstance(auth_data, LoginPassword)
            and hmac.compare_digest(auth_data.login, self.username.encode())
            and hmac.compare_digest(auth_data.password, self._password.encode())
        ):
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def _protocol(self) -> SMTPProtocol:
        self.connections += 1
        starttls = self.security == "starttls"
        protocol = _Protocol(
            self,
            self._handler,
            hostname=_SERVER_NAME,
            tls_context=self._tls if starttls else None,
            require_starttls=starttls,
            # aiosmtpd cannot see implicit TLS; AUTH is then enforced in handle_MAIL instead
            auth_require_tls=starttls,
            authenticator=self._authenticate if self.username is not None else None,
            timeout=30,
            **({"data_size_limit": self.size_limit} if self.size_limit else {}),
            loop=asyncio.get_running_loop(),
        )
        self._protocols.add(protocol)
        return protocol

    async def start(self) -> None:
        """Bind ``host`` on a free port and start answering."""
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol,
            host=self.host,
            port=0,
            ssl=self._tls if self.security == "tls" else None,
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        self.drop_connections()
        try:
            await asyncio.wait_for(server.wait_closed(), 2)
        except TimeoutError:
            pass

    def drop_connections(self) -> None:
        """Close every open connection, as a server does with one idle past its timeout."""
        for protocol in list(self._protocols):
            if protocol.transport is not None:
                protocol.transport.close()
        self._protocols.clear()

    async def __aenter__(self) -> SMTPServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


_END_OF_DATA = b"\r\n.\r\n"
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# a reverse- or forward-path of dot-atoms only: the form whose reading needs no parser
_PLAIN_PATH = re.compile(rf"<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>")


class _Protocol(SMTPProtocol):
    """aiosmtpd's protocol, forgetting itself on the server once the connection is gone.

    DATA is read in blocks, not line by line: aiosmtpd's loop costs about 2 ms of CPU for a
    message of 60 kB, so on a benchmark's shared cores the sink of a thousand messages would
    take two seconds from the client it measures. The replies and limits are aiosmtpd's.
    """

    def __init__(self, owner: SMTPServer, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._owner = owner

    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        limit = self.data_size_limit
        # a line end before the first line, so that even an empty message ends in CRLF . CRLF
        block = bytearray(b"\r\n")
        dropped = False  # past the size limit: the rest is read and thrown away
        start = 0
        while (end := block.find(_END_OF_DATA, start)) < 0:
            start = max(0, len(block) - len(_END_OF_DATA) + 1)
            chunk = await self._reader.read(1 << 16)
            if not chunk:
                return  # the connection closed: aiosmtpd ends the session
            block += chunk
            if limit and len(block) > limit + 2 + len(_END_OF_DATA):
                del block[: 1 - len(_END_OF_DATA)]  # kept: what may begin the end mark
                start, dropped = 0, True
        if rest := bytes(block[end + len(_END_OF_DATA) :]):
            self._reader.feed_data(rest)  # the next command, pipelined behind the data
        data = bytes(block[2 : end + 2])
        if dropped or (limit and end > limit):
            await self.push("552 Error: Too much mail data")
        elif max(map(len, data.split(b"\r\n"))) + 2 > self.line_length_limit:
            await self.push("500 Line too long (see RFC5321 4.5.3.1.6)")
        else:
            # each line's leading dot taken off (RFC 5321 4.5.2): a search with a choice at every
            # byte cost 0.8 ms for 50 kB, a plain replace some 20 us
            content = data[1:] if data[:1] == b"." else data
            content = content.replace(b"\r\n.", b"\r\n")
            self.envelope.content = self.envelope.original_content = content
            status = await self._call_handler_hook("DATA")
            self.envelope = self._create_envelope()  # the state after DATA
            await self.push("250 OK" if status is MISSING else status)
            return
        self.envelope = self._create_envelope()  # the state after DATA

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # a plain <local@domain> as every client here sends it, read without aiosmtpd's header
        # parser (0.2 ms of CPU for each MAIL and RCPT); anything else goes to that parser
        text = arg.lstrip()
        match = _PLAIN_PATH.match(text)
        rest = text[match.end() :].lstrip(" \t") if match else ""
        if match is None or rest[:1].isspace() or rest.startswith("("):
            return super()._getaddr(arg)
        address = match.group(1)
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, rest

    def connection_lost(self, error: Exception | None) -> None:
        self._owner._protocols.discard(self)
        super().connection_lost(error)
