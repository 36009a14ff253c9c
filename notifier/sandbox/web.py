"""A small HTTP/HTTPS virtual-host server for the loopback internet.

It serves RDAP registries, security.txt files and a time-stamping authority to tests and to
``notify demo``, and can misbehave on request: drip a body a byte at a time, stream a huge one,
answer 429 with Retry-After. It binds only the loopback addresses it is given.
"""

from __future__ import annotations

import asyncio
import inspect
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import trustme

__all__ = ["SandboxCA", "WebServer", "Reply", "Request", "Handler"]

_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
_MAX_HEAD = 65_536
_MAX_BODY = 1_048_576


class SandboxCA:
    """A throwaway certificate authority; clients trust it through ``http.ca_bundle``."""

    def __init__(self) -> None:
        self._ca = trustme.CA()

    def pem_path(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "sandbox-ca.pem"
        self._ca.cert_pem.write_to_path(str(path))
        return path

    def server_context(self, hostnames: list[str]) -> ssl.SSLContext:
        names = list(dict.fromkeys([*hostnames, "localhost", "127.0.0.1", "::1"]))
        cert = self._ca.issue_cert(*names)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self._ca.configure_trust(context)
        return context


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    host: str
    headers: dict[str, str]
    body: bytes = b""
    at: float = field(default_factory=time.monotonic)  # when it was read (benchmarks' timelines)


@dataclass(slots=True)
class Reply:
    """What to answer. ``drip`` seconds between body bytes; ``repeat`` streams the body N times."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drip: float = 0.0
    repeat: int = 1


Handler = Callable[[Request], "Reply | Awaitable[Reply]"]


class WebServer:
    """Routes by (Host, path); plain HTTP when ``ca`` is None, HTTPS otherwise."""

    def __init__(
        self,
        *,
        ca: SandboxCA | None = None,
        hostnames: list[str] | None = None,
        bind: list[str] | None = None,
        port: int = 0,
    ) -> None:
        self._bind = bind or ["127.0.0.1"]
        self._ssl = ca.server_context([*(hostnames or []), *self._bind]) if ca else None
        self._port = port
        self._routes: list[tuple[str | None, str, Handler | Reply]] = []
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.requests: list[Request] = []
        self.latency = 0.0  # seconds added before every answer (benchmarks inject it)
        # answer several requests on one connection (HTTP/1.1 keep-alive), as production
        # servers do; off by default, so every request is a fresh connection
        self.keep_alive = False

    @property
    def port(self) -> int:
        return self._port

    @property
    def scheme(self) -> str:
        return "https" if self._ssl else "http"

    def url(self, host: str = "127.0.0.1") -> str:
        """Base URL (ending in /) for ``host`` on this server."""
        return f"{self.scheme}://{host}:{self._port}/"

    def route(self, path: str, answer: Handler | Reply, *, host: str | None = None) -> None:
        """Answer ``path`` (a prefix when it ends in ``*``) for ``host`` (None: every host).

        Later routes win over earlier ones, so a test can override one path of a fixture.
        """
        self._routes.insert(0, (host.lower() if host else None, path, answer))

    async def start(self) -> None:
        for address in self._bind:
            server = await asyncio.start_server(
                self._serve, host=address, port=self._port, ssl=self._ssl, reuse_address=True
            )
            if not self._port:
                self._port = server.sockets[0].getsockname()[1]
            self._servers.append(server)

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        for server in self._servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 2)
            except TimeoutError:
                pass
        self._servers.clear()

    async def __aenter__(self) -> WebServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _find(self, host: str, path: str) -> Handler | Reply | None:
        for route_host, pattern, answer in self._routes:
            if route_host is not None and route_host != host:
                continue
            if pattern.endswith("*") and path.startswith(pattern[:-1]) or pattern == path:
                return answer
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    return
                self.requests.append(request)
                if self.latency:
                    await asyncio.sleep(self.latency)
                answer = self._find(request.host, request.path)
                if answer is None:
                    reply = Reply(404, b"not found\n", {"Content-Type": "text/plain"})
                elif isinstance(answer, Reply):
                    reply = answer
                else:
                    produced = answer(request)
                    reply = await produced if inspect.isawaitable(produced) else produced
                keep = self.keep_alive and request.headers.get("connection", "").lower() != "close"
                await self._write_reply(
                    writer, reply, head_only=request.method == "HEAD", keep_alive=keep
                )
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, asyncio.CancelledError):
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 1)
            except (TimeoutError, ConnectionError, ssl.SSLError, asyncio.CancelledError):
                pass

    async def _read_request(self, reader: asyncio.StreamReader) -> Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.LimitOverrunError, asyncio.IncompleteReadError):
            return None
        if len(head) > _MAX_HEAD:
            return None
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, _version = lines[0].split(" ", 2)
        except ValueError:
            return None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        body = await reader.readexactly(min(length, _MAX_BODY)) if length else b""
        parts = urlsplit(target)
        host = headers.get("host", "")
        host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return Request(
            method=method.upper(),
            path=unquote(parts.path),
            query=parse_qs(parts.query),
            host=host.strip("[]").lower(),
            headers=headers,
            body=body,
        )

    async def _write_reply(
        self,
        writer: asyncio.StreamWriter,
        reply: Reply,
        *,
        head_only: bool,
        keep_alive: bool = False,
    ) -> None:
        headers = {k.lower(): v for k, v in reply.headers.items()}
        headers.setdefault("content-length", str(len(reply.body) * reply.repeat))
        headers["connection"] = "keep-alive" if keep_alive else "close"
        status_line = f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}\r\n"
        head = status_line + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        writer.write(head.encode("latin-1"))
        await writer.drain()
        if head_only:
            return
        for _ in range(reply.repeat):
            if reply.drip:
                for byte in reply.body:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(reply.drip)
            else:
                writer.write(reply.body)
                await writer.drain()
