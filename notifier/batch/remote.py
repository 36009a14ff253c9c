"""Lookup workers: a large batch's per-address work in other processes.

Each address costs some hundreds of microseconds of Python in the sending process (its PTR
query and forward confirmation, the lookups by host name, the policy over the answers), so one
core bounds a batch of tens of thousands of addresses well before the registries do. Once a
batch has more than ``REMOTE_AFTER`` addresses waiting for reverse DNS, it starts worker
processes (``limits.lookup_workers``; unset: one per core but the sending process's) and hands
them addresses from the same queue its own DNS stage takes from, as fast as each takes them.

The registry stage stays in the sending process: it is the rate-limited critical path, and one
process sees every network at once, asks for each once and paces each registry alone. A worker
gets each address's registry answer from it (each answer travels once, then by a number) and
sends back the address's ``Resolution``. A worker that dies or cannot start leaves its addresses
to the sending process, which looks them up itself; a worker ends when the sending process
does (its end of the socket closes).

Messages are pickled tuples behind a four-byte length, over a socket pair whose writes asyncio
buffers, so neither side ever blocks the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import pickle
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..config import Settings
from ..models import Resolution, SourceReport, Target
from ..workers import forkserver, other_cores

__all__ = ["REMOTE_AFTER", "SILENCE", "Remote", "default_lookup_workers", "serve"]

# addresses waiting for reverse DNS before a batch starts its workers: fewer are some two seconds
# of one core's work, done while the registries' queues drain anyway, and a worker costs about a
# second of CPU to start (measured: 3,000 addresses were no faster with one)
REMOTE_AFTER = 4_000
_WINDOW_PER_QUERY = 2  # a worker's addresses in DNS at once: twice its share of the queries
_HEADER = 4
_CLOSE_WAIT = 5.0  # seconds a worker has to end once told
# seconds a worker with work it can finish may stay silent before it counts as hung (killed, its
# addresses looked up at home): longer than any source's deadline, so only a stuck one is
SILENCE = 180.0
_WATCH_EVERY = 5.0

Result = tuple[int, Resolution | None, str]  # an address, its resolution or why there is none


def default_lookup_workers() -> int:
    """One per core this process may run on, but for the sending process's."""
    return max(0, other_cores())


def _frame(message: tuple[Any, ...]) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return len(data).to_bytes(_HEADER, "big") + data


async def _read(reader: asyncio.StreamReader) -> tuple[Any, ...] | None:
    """The next message, or None once the other side is gone."""
    try:
        size = int.from_bytes(await reader.readexactly(_HEADER), "big")
        # only ever from the other end of our own socket pair
        message: tuple[Any, ...] = pickle.loads(await reader.readexactly(size))  # noqa: S301
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    return message


class _Outbox:
    """Items to send, gathered for one message per kind each iteration of the event loop."""

    # an address before its registry answer, an answer before the addresses that refer to it
    _ORDER = {"target": 0, "reports": 1, "answer": 2, "dns": 3, "result": 4, "cpu": 5}

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._items: dict[str, list[Any]] = {}
        self._due = False

    def add(self, kind: str, item: Any) -> None:
        self._items.setdefault(kind, []).append(item)
        if not self._due:
            self._due = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._due = False
        items, self._items = self._items, {}
        if self._writer.is_closing():
            return
        for kind in sorted(items, key=self._ORDER.__getitem__):
            self._writer.write(_frame((kind, items[kind])))


# -- the sending process's side -------------------------------------------------------------


class Remote:
    """One worker process, as the sending process sees it."""

    def __init__(
        self,
        settings: Settings,
        width: int,
        on_result: Callable[[Result], Awaitable[None]],
        on_lost: Callable[[Remote], None],
    ) -> None:
        self.width = width
        self.ready = False
        self.lost = False
        self.cpu_seconds = 0.0  # the worker's own, as it last said
        self.held: dict[int, list[SourceReport] | None] = {}  # addresses it has, and answers
        self._settings = settings
        self._on_result = on_result
        self._on_lost = on_lost
        self._window = width * _WINDOW_PER_QUERY
        self._in_dns = 0
        self._room = asyncio.Event()
        self._tokens: dict[int, tuple[int, list[SourceReport]]] = {}  # id(answer): number, it
        self._process: multiprocessing.process.BaseProcess | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._outbox: _Outbox | None = None
        self._reading: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._heard = 0.0  # when the worker last said anything
        self._ours, theirs = socket.socketpair()
        self._starter = threading.Thread(target=self._start, args=(theirs,), name="lookup-worker")
        self._starter.start()

    def _start(self, theirs: socket.socket) -> None:
        # beside the event loop: the first start waits for the fork server to import the package
        try:
            process = forkserver().Process(
                target=serve, args=(self._settings, theirs, self.width), daemon=True
            )
            process.start()
        except Exception:  # noqa: BLE001 - no process here: the sending process does it all
            self._loop.call_soon_threadsafe(self._gone)
            return
        finally:
            theirs.close()
        self._process = process
        try:
            self._loop.call_soon_threadsafe(self._started)
        except RuntimeError:  # the batch ended (its loop with it) while the worker started
            process.kill()

    def _started(self) -> None:
        self._reading = self._loop.create_task(self._connect())

    async def _connect(self) -> None:
        try:
            reader, self._writer = await asyncio.open_connection(sock=self._ours)
        except OSError:
            self._gone()
            return
        self._outbox = _Outbox(self._writer)
        self.ready = True
        self._room.set()
        self._heard = self._loop.time()
        watch = self._loop.create_task(self._watch())
        try:
            while (message := await _read(reader)) is not None:
                self._heard = self._loop.time()
                kind, values = message
                if kind == "dns":
                    self._in_dns -= sum(values)
                    if self.room() > 0:
                        self._room.set()
                elif kind == "result":
                    for result in values:
                        self.held.pop(result[0], None)
                        await self._on_result(result)
                elif kind == "cpu":
                    self.cpu_seconds = values[-1]
        finally:
            watch.cancel()
            self._gone()

    async def _watch(self) -> None:
        """A worker that has work it can finish (queries of its own, addresses whose registry
        answer it has) but says nothing for ``SILENCE`` seconds is stuck: it is killed, and
        what it held is looked up at home."""
        while not self.lost:
            await asyncio.sleep(min(_WATCH_EVERY, SILENCE))
            busy = self._in_dns > 0 or any(a is not None for a in self.held.values())
            if busy and self._loop.time() - self._heard > SILENCE:
                if self._process is not None:
                    self._process.kill()
                self._gone()
                return

    def _gone(self) -> None:
        if self.lost:
            return
        self.lost = True
        self.ready = False
        self._room.set()  # whoever waits for room finds the worker gone
        self._on_lost(self)

    @property
    def in_dns(self) -> int:
        """Addresses it has in reverse DNS (or not yet begun)."""
        return self._in_dns

    def room(self) -> int:
        """Addresses it may be given now."""
        return self._window - self._in_dns if self.ready else 0

    async def wait_room(self) -> None:
        self._room.clear()
        if self.room() <= 0 and not self.lost:
            await self._room.wait()

    def give(self, ip_id: int, target: Target, answer: list[SourceReport] | None) -> None:
        """Hand over an address (with its registry answer when already known)."""
        assert self._outbox is not None
        self.held[ip_id] = answer
        self._in_dns += 1
        self._outbox.add("target", (ip_id, target))
        if answer is not None:
            self.answer(ip_id, answer)

    def answer(self, ip_id: int, reports: list[SourceReport]) -> None:
        """The registry's answer for an address it holds."""
        assert self._outbox is not None
        self.held[ip_id] = reports
        known = self._tokens.get(id(reports))
        if known is None:
            known = self._tokens[id(reports)] = (len(self._tokens), reports)
            self._outbox.add("reports", (known[0], reports))
        self._outbox.add("answer", (ip_id, known[0]))

    async def close(self) -> None:
        """Let the worker go and wait for it (briefly: it has nothing left once told): the
        end of what we write tells it, and its last word is the CPU time it used."""
        if self._outbox is not None:
            self._outbox.flush()
        if self._writer is not None and self._reading is not None:
            if self._writer.can_write_eof():
                self._writer.write_eof()
            with contextlib.suppress(Exception):  # it is let go either way
                await asyncio.wait_for(asyncio.shield(self._reading), _CLOSE_WAIT)
            self._writer.close()
        else:
            self._ours.close()
        # a worker still starting is started (or not) before it is let go
        await asyncio.to_thread(self._starter.join)
        process = self._process
        if process is not None:
            await asyncio.to_thread(process.join, _CLOSE_WAIT)
            if process.is_alive():
                process.kill()
                await asyncio.to_thread(process.join, _CLOSE_WAIT)
        if self._reading is not None:
            self._reading.cancel()
            await asyncio.gather(self._reading, return_exceptions=True)


# -- the worker process ---------------------------------------------------------------------


def serve(settings: Settings, sock: socket.socket, width: int) -> None:
    """A worker process's life: look up what it is given until the sending process is done."""
    asyncio.run(_serve(settings, sock, width))


async def _serve(settings: Settings, sock: socket.socket, width: int) -> None:
    from ..cache import LookupCache
    from ..pipeline import Notifier
    from .heap import fewer_collections
    from .stages import Lookups

    fewer_collections()
    reader, writer = await asyncio.open_connection(sock=sock)
    outbox = _Outbox(writer)
    targets: dict[int, Target] = {}
    reports: dict[int, list[SourceReport]] = {}

    async def finish(ip_id: int, resolution: Resolution) -> None:
        del targets[ip_id]
        outbox.add("result", (ip_id, resolution, ""))

    def fail(ip_id: int, reason: str) -> None:
        del targets[ip_id]
        outbox.add("result", (ip_id, None, reason))

    cache = LookupCache.from_settings(settings)
    cache.write_behind = 256
    try:
        async with Notifier(settings, cache=cache) as notifier:
            lookups = Lookups(
                notifier.ctx,
                targets.__getitem__,
                finish,
                fail,
                width=width,
                own_registry=False,
                on_dns=lambda: outbox.add("dns", 1),
            )
            try:
                while (message := await _read(reader)) is not None:
                    kind, values = message
                    if kind == "target":
                        for ip_id, target in values:
                            targets[ip_id] = target
                            lookups.add(ip_id)
                    elif kind == "reports":
                        reports.update(values)
                    elif kind == "answer":
                        for ip_id, token in values:
                            lookups.answer(ip_id, reports[token])
            finally:
                await lookups.close()
                cache.flush()
                outbox.add("cpu", time.process_time())
                outbox.flush()
                if not writer.is_closing():
                    await writer.drain()
                writer.close()
    finally:
        cache.close()
