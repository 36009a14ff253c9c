"""A second sending process: the deliver stage of part of a run's messages, on another core.

Once a batch's lookups are done, its delivery is bound by the CPU of the process that sends:
the SMTP exchange of a 40-60 kB message, the claim, the intent and the outcome records and the
model reading them back cost some 3.5 ms a message, while composing already runs on the other
cores. A run that expects many messages therefore starts a relay (where there is a core for
it; on two cores shared with a local mail server it shortens the delivery by a tenth): a
process from the fork server with its own SMTP connections and its own handle on the same
ledger, running ``Dispatcher.hand_over`` for the messages it is handed, exactly as the sending
process would.
Everything before the hand-over stays in the sending process (the history's say, the run cap,
composing, signing or encrypting), so the relay changes who speaks SMTP, not what is sent or
what is recorded.

- One process per recipient domain: a domain's first message goes to the relay when it has room
  (fewer than ``DEPTH`` messages in hand) and the domain's later messages follow it, so the
  sending rate per domain is kept by one limiter.
- The write-ahead rule holds in the relay as here: its claim under the ledger's lock, its intent
  right before DATA, its outcome after. Its intents name its own worker, so any other process
  sees them in flight while it lives and in doubt once it is gone.
- A relay that ends (killed, crashed) or fails hands every message it held back as "decide
  again" (``LOST``): the sending process re-reads the ledger, sends itself what it says was not
  sent and reports in doubt what may have been. A sending process that ends makes the relay
  drop what it had not claimed yet, finish what it had (its outcome then is on record) and exit.
"""

from __future__ import annotations

import asyncio
import itertools
import pickle
import socket
import struct
import sys
import threading
from contextlib import AsyncExitStack
from dataclasses import replace
from multiprocessing.process import BaseProcess
from typing import Any

from .config import Settings
from .dispatch import MAX_SMTP_CONNECTIONS, Dispatcher, Handover
from .gate import Gate, Refusal
from .ledger import GroupCommit, open_ledger
from .models import Delivery, DeliveryStatus
from .sources import Tracer, utcnow
from .workers import forkserver, other_cores

__all__ = ["DEPTH", "LOST", "Relay", "pays", "serve"]

DEPTH = MAX_SMTP_CONNECTIONS  # messages in the relay's hands at once (its SMTP connections)
CLOSE_WAIT = 30.0  # seconds a relay has to end once the sending process is done with it

LOST: Refusal = (
    DeliveryStatus.IN_DOUBT,
    "the relay process ended or failed: decided again from the log",
)

_HEADER = struct.Struct("!I")
_MAX_FRAME = 256 << 20  # a frame longer than this is no frame of ours


def _frame(message: tuple[str, int, Any]) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


async def _receive(reader: asyncio.StreamReader) -> tuple[str, int, Any]:
    (length,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if length > _MAX_FRAME:
        raise ValueError(f"relay frame of {length} bytes")
    # a socketpair between two processes of this run: nothing else can write to it
    kind, number, payload = pickle.loads(await reader.readexactly(length))  # noqa: S301
    return str(kind), int(number), payload


def pays(settings: Settings, messages: int) -> bool:
    """Whether a run expecting ``messages`` messages starts a relay: as many as
    ``limits.relay_from`` (starting one costs about 0.1 s of CPU, a fork of the server and the
    ledger's model read once, what handing over some 50 messages saves) and a core for it."""
    least = settings.limits.relay_from
    return 0 < least <= messages and other_cores() >= 1


class Relay:
    """The sending process's side: starts the relay, hands it messages, reads its answers."""

    def __init__(self, settings: Settings, trace: Tracer | None) -> None:
        self._settings = settings
        self._trace = trace  # None: the run does not trace, the relay sends no events
        self._owners: dict[str, bool] = {}  # recipient domain -> whether the relay sends to it
        self._waiting: dict[int, asyncio.Future[Delivery | Refusal]] = {}
        self._numbers = itertools.count(1)
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None
        self._starter: threading.Thread | None = None
        self._process: BaseProcess | None = None
        self._ready = False  # the relay has its ledger and its gate: it takes messages
        self.handed = 0  # messages handed to the relay
        self.failure = ""  # why the relay stopped taking messages, if it did
        self._closing = False
        self._ending: asyncio.Future[None] | None = None

    def start(self) -> None:
        """Start the relay beside the event loop (starting a process may wait for the fork
        server to have imported the package). Messages go to it once it said it is ready."""
        if self._starter is not None:
            return
        ours, theirs = socket.socketpair()
        loop = asyncio.get_running_loop()
        self._reading = loop.create_task(self._read(ours))
        tracing = self._trace is not None

        def run() -> None:
            try:
                process = forkserver().Process(
                    target=serve,
                    args=(self._settings, theirs, tracing),
                    name="notifier-relay",
                    daemon=True,
                )
                process.start()
                self._process = process
            except Exception as exc:  # noqa: BLE001 - no relay here: every message stays here
                self.failure = f"the relay did not start: {exc}"
            finally:
                theirs.close()  # the relay has its copy; without one, ours reads the end

        self._starter = threading.Thread(target=run, name="relay-start", daemon=True)
        self._starter.start()

    def takes(self, domain: str) -> bool:
        """Whether the relay sends this message (to a recipient at ``domain``): yes for every
        message to a domain it was given, and for a new domain when it has room."""
        owner = self._owners.get(domain)
        if owner is None:
            owner = self._owners[domain] = self._ready and len(self._waiting) < DEPTH
        return owner and self._ready

    async def hand_over(self, item: Handover) -> Delivery | Refusal:
        """``Dispatcher.hand_over`` in the relay; ``LOST`` if the relay ended before it said."""
        writer = self._writer
        if not self._ready or writer is None:
            return LOST
        number = next(self._numbers)
        future: asyncio.Future[Delivery | Refusal] = asyncio.get_running_loop().create_future()
        self._waiting[number] = future
        if item.composed.built is not None:  # the bytes travel, not the object form
            item = replace(item, composed=replace(item.composed, built=None))
        writer.write(_frame(("hand-over", number, item)))
        self.handed += 1
        return await future

    async def _read(self, sock: socket.socket) -> None:
        try:
            reader, self._writer = await asyncio.open_unix_connection(sock=sock)
            while True:
                kind, number, payload = await _receive(reader)
                if kind == "ready":
                    self._ready = True
                elif kind == "trace":
                    if self._trace is not None:
                        self._trace(*payload)
                elif kind == "failed":  # no more messages for it; what it holds still comes
                    self.failure = str(payload)
                    self._ready = False
                    self._answer(number, LOST)
                else:
                    self._answer(number, payload)
        # either way, what the relay held is decided again here and this process sends the rest
        except (asyncio.IncompleteReadError, OSError):
            self.failure = self.failure or "the relay process ended"
        except Exception as exc:  # noqa: BLE001 - a garbled answer ends the relay's part too
            self.failure = self.failure or f"the relay's answer could not be read: {exc}"
        finally:
            self._stop()
            if not self._closing and self._trace is not None:
                self._trace("relay-ended", {"reason": self.failure})

    def _answer(self, number: int, result: Delivery | Refusal) -> None:
        future = self._waiting.pop(number, None)
        if future is not None and not future.done():
            future.set_result(result)

    def _stop(self) -> None:
        """No more messages for the relay; those it held come back as ``LOST``."""
        self._ready = False
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_result(LOST)

    @property
    def finished(self) -> bool:
        """Told to end (``finish``): it takes no more messages."""
        return self._ending is not None

    def finish(self) -> None:
        """Tell the relay it is done now (it ends once its messages are recorded), while this
        process goes on with its own last work; ``close`` then waits for the end."""
        if self._ending is None:
            self._ending = asyncio.ensure_future(self._end())

    async def close(self) -> None:
        """Tell the relay it is done (it ends once its messages are recorded), wait for it."""
        self.finish()
        assert self._ending is not None
        await self._ending

    async def _end(self) -> None:
        self._ready = False
        self._closing = True
        if self._starter is not None:
            await asyncio.to_thread(self._starter.join)
        if self._writer is not None:
            self._writer.close()
        if self._reading is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._reading), CLOSE_WAIT)
            except TimeoutError:
                self._reading.cancel()
        process = self._process
        if process is not None:
            await asyncio.to_thread(process.join, CLOSE_WAIT)
            if process.is_alive():
                process.kill()
                await asyncio.to_thread(process.join)


# -- the relay process ----------------------------------------------------------------------


def serve(settings: Settings, sock: socket.socket, tracing: bool) -> None:
    """The relay process: hand over what the sending process sends, until it is done."""
    asyncio.run(_serve(settings, sock, tracing))


async def _serve(settings: Settings, sock: socket.socket, tracing: bool) -> None:
    reader, writer = await asyncio.open_unix_connection(sock=sock)

    def say(kind: str, number: int = 0, payload: object = None) -> None:
        if not writer.is_closing():
            writer.write(_frame((kind, number, payload)))

    def trace(event: str, fields: dict[str, Any]) -> None:
        if tracing:
            say("trace", 0, (event, fields))

    ledger = open_ledger(settings, clock=utcnow)
    # the run cap is the sending process's (it counts what it hands over): none here
    gate = Gate(ledger, settings.limits, clock=utcnow, max_messages=sys.maxsize)
    claimed: set[asyncio.Task[None]] = set()  # past their intent: finished whatever comes
    tasks: set[asyncio.Task[None]] = set()
    async with AsyncExitStack() as stack:
        journal = GroupCommit(ledger, prepare=gate.refresh)
        dispatcher = Dispatcher(settings, journal, gate, stack, trace)
        dispatcher.warm(MAX_SMTP_CONNECTIONS)  # a relay starts for many messages

        async def one(number: int, item: Handover) -> None:
            task = asyncio.current_task()
            assert task is not None
            try:
                result = await dispatcher.hand_over(item, on_intent=lambda: claimed.add(task))
            except Exception as exc:  # noqa: BLE001 - said to the sending process, which
                # stops handing over and decides again: there the failure is raised as ever
                say("failed", number, f"{type(exc).__name__}: {exc}")
                return
            say("done", number, result)

        say("ready")
        try:
            while True:
                kind, number, item = await _receive(reader)
                if kind == "hand-over":
                    task = asyncio.get_running_loop().create_task(one(number, item))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    task.add_done_callback(claimed.discard)
        except (asyncio.IncompleteReadError, OSError, ValueError, pickle.UnpicklingError):
            pass  # the sending process is done, or gone
        for task in tasks:
            if task not in claimed:
                task.cancel()  # not claimed: nothing of it is on record, nothing was sent
        await asyncio.gather(*tasks, return_exceptions=True)
    writer.close()
