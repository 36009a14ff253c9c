"""A port-43 WHOIS server for the loopback internet.

It answers registry queries from a dict or a callable, records every query it was sent, and can
misbehave on request: drip the answer a byte at a time, stream a huge answer, hang up without a
word, or never answer at all. It binds only the loopback address it is given.

::

    server = WhoisServer({"-r -B 62.239.237.1": ripe_text})
    await server.start()
    settings = Settings.from_mapping(
        {"whois": {"servers": {"whois.ripe.net": f"127.0.0.1:{server.port}"}}}
    )
    ...
    server.queries            # ["-r -B 62.239.237.1"]
    await server.stop()
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping

__all__ = ["WhoisServer", "Answer", "Responder", "NOT_FOUND"]

Answer = str | bytes
Responder = Callable[[str], "Answer | None | Awaitable[Answer | None]"]

NOT_FOUND = "% No entries found for the selected source(s).\n"

_MAX_QUERY = 4096
_READ_TIMEOUT = 5.0
_CHUNK = 65_536


class WhoisServer:
    """Answers one query per connection (RFC 3912), then closes.

    ``answers`` maps a query line to its answer; a query not found as sent is looked up by its
    last word (so ``"n + 74.125.225.229"`` finds ``"74.125.225.229"``), then ``default`` is
    sent. A callable gets the query line and returns the answer (None: ``default``). ``str``
    answers are encoded with ``encoding``; ``bytes`` go out as they are (charset tests).

    Misbehaviour, set at construction or later as attributes:
    ``drip`` seconds between answer bytes; ``huge`` streams that many bytes instead of the
    answer; ``close_without_answer`` hangs up after reading the query; ``never_answer`` keeps
    the connection open and silent until the client gives up.
    """

    def __init__(
        self,
        answers: Mapping[str, Answer] | Responder | None = None,
        *,
        default: Answer = NOT_FOUND,
        encoding: str = "utf-8",
        drip: float = 0.0,
        huge: int = 0,
        close_without_answer: bool = False,
        never_answer: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.answers: Mapping[str, Answer] | Responder = answers if answers is not None else {}
        self.default = default
        self.encoding = encoding
        self.drip = drip
        self.huge = huge
        self.close_without_answer = close_without_answer
        self.never_answer = never_answer
        self.queries: list[str] = []
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        return self._port

    @property
    def endpoint(self) -> str:
        """``host:port``, the form ``whois.servers`` overrides take."""
        return f"{self._host}:{self._port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, host=self._host, port=self._port, reuse_address=True
        )
        if not self._port:
            self._port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        try:
            await asyncio.wait_for(self._server.wait_closed(), 2)
        except TimeoutError:
            pass
        self._server = None

    async def __aenter__(self) -> WhoisServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def answer_for(self, query: str) -> bytes:
        """The bytes this server sends for ``query`` (misbehaviour aside)."""
        answer: Answer | None
        if callable(self.answers):
            produced = self.answers(query)
            answer = await produced if inspect.isawaitable(produced) else produced
        else:
            answer = self.answers.get(query)
            if answer is None and query.split():
                answer = self.answers.get(query.split()[-1])
        if answer is None:
            answer = self.default
        return answer.encode(self.encoding) if isinstance(answer, str) else answer

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            line = await asyncio.wait_for(reader.readline(), _READ_TIMEOUT)
            query = line[:_MAX_QUERY].decode("utf-8", errors="replace").strip("\r\n")
            self.queries.append(query)
            if self.never_answer:
                while await reader.read(_CHUNK):  # silent until the client hangs up
                    pass
                return
            if self.close_without_answer:
                return
            if self.huge:
                await self._stream_huge(writer)
                return
            body = await self.answer_for(query)
            if self.drip:
                for byte in body:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(self.drip)
            else:
                writer.write(body)
                await writer.drain()
        except (ConnectionError, TimeoutError, ValueError, asyncio.CancelledError):
            pass  # the client gave up, or sent an endless line: nothing more to say to it
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 1)
            except (TimeoutError, ConnectionError, asyncio.CancelledError):
                pass

    async def _stream_huge(self, writer: asyncio.StreamWriter) -> None:
        filler = (b"remarks:        " + b"x" * 47 + b"\n") * (_CHUNK // 64)
        sent = 0
        while sent < self.huge:
            chunk = filler[: self.huge - sent]
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
