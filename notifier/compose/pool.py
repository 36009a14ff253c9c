"""Composing off the event loop: worker processes for a run that sends many messages.

Rendering and MIME generation are pure CPU (some 5 ms for a 40-finding message); in a batch of
hundreds of messages they would hold the one core the event loop also needs for SMTP, the
audit log and the lookups still running. ``Composer`` composes the first ``IN_PROCESS_FIRST``
messages of a run itself, then starts worker processes (once per run: one per core but the one
the sending process keeps busy, at least one) and hands every further message to them, so a
``send`` never pays for processes and a batch composes on the other cores. A run that knows
early that it will send many messages (a batch, once its lookups have found enough recipients)
calls ``expect``: the workers start then, while it is still looking up, and are up before its
first message, so every one of its messages is composed in a worker.

A worker runs the same ``compose`` on the same settings and templates and sends back the exact
bytes and the fields of the log record; the object form of the message is read back from those
bytes only if something asks for it. The workers are started by a thread beside the event loop
(starting one waits for their server to import the package) and used once every one is up.
Whatever goes wrong in a worker (a template error, a dead worker) makes the message be composed
again here, so a failure is raised exactly as without workers; a dead pool is not restarted.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime

from ..config import Settings
from ..ledger.chain import normalise_fields
from ..ledger.records import intent_findings
from ..models import Contact, Finding, Network
from ..workers import forkserver, other_cores
from . import compose, library_for
from .mime import ComposedMessage

__all__ = ["IN_PROCESS_FIRST", "Composer", "Job"]

# messages a run composes itself before it starts workers: starting them costs the machine about
# a second of CPU (their server imports the package), what composing some 150 messages costs, so
# a send, a follow-up round or a small batch never pays for processes
IN_PROCESS_FIRST = 50
# messages composed ahead, held until sent: at most this many in a worker at once (a message
# that cannot wait is not queued behind them), at most this many bytes kept
AHEAD_IN_FLIGHT_PER_WORKER = 16
AHEAD_BYTES = 64 << 20

_settings: Settings | None = None  # a worker's copy, set once when it starts


@dataclass(frozen=True, slots=True)
class Job:
    """Everything ``compose`` needs besides the run's settings: what goes to a worker."""

    findings: Sequence[Finding]
    contact: Contact
    template: str | None
    case_ref: str
    now: datetime
    log_head: str | None = None
    in_reply_to: str | None = None
    references: Sequence[str] = ()
    network: Network | None = None

    def same_message(self) -> Hashable:
        """What makes two jobs one message (their moment and the log's head aside: a message
        composed a little ahead says when it was written and a head the log had then)."""
        return (
            self.contact,
            self.template,
            self.case_ref,
            tuple(self.findings),
            self.network,
            self.log_head is None,
            self.in_reply_to,
            tuple(self.references),
        )

    def run(self, settings: Settings) -> ComposedMessage:
        return compose(
            self.findings,
            self.contact,
            settings=settings,
            template=self.template,
            case_ref=self.case_ref,
            now=self.now,
            log_head=self.log_head,
            in_reply_to=self.in_reply_to,
            references=self.references,
            network=self.network,
        )


def _start_worker(settings: Settings) -> None:
    global _settings
    _settings = settings
    threading.Thread(target=_exit_with_sender, name="sender-watch", daemon=True).start()
    library_for(settings)  # compiled once per worker, before its first message


def _exit_with_sender() -> None:
    """End this worker when the sending process is gone.

    A worker waits for its next message on a pipe it also holds the writing end of, so a
    sending process killed outright (SIGKILL) would leave it, and the server it came from,
    waiting forever. The parent's sentinel becomes readable the moment that process ends.
    """
    parent = multiprocessing.parent_process()
    if parent is not None:
        parent.join()
        os._exit(0)


def _ready() -> bool:
    return True


def _compose_in_worker(job: Job, ahead: bool) -> ComposedMessage | None:
    assert _settings is not None
    try:
        composed = job.run(_settings)
        # composed ahead, while the lookups go on, a worker has time to write what the intent
        # says of the findings (0.3 ms of the sending process a message, once it sends); a
        # message asked for when it is sent is waited for, and the worker's time is the run's
        parts = normalise_fields(intent_findings(job.findings)).parts if ahead else None
    except Exception:
        return None  # composed again by the caller, which raises the error itself
    return replace(composed, built=None, record_parts=parts)  # the bytes travel, not the object


def default_workers() -> int:
    """One worker per core this process may run on, but for the one the sending process uses."""
    return max(1, other_cores())


class Composer:
    """Composes a run's messages: here for the first few, then in worker processes."""

    def __init__(self, settings: Settings, workers: int | None = None) -> None:
        self.settings = settings
        self.workers = default_workers() if workers is None else workers
        self.composed = 0  # messages asked for in this run
        self.in_process = 0  # of which composed here, not in a worker
        self._pool: ProcessPoolExecutor | None = None
        self._starter: threading.Thread | None = None
        self._ready = threading.Event()  # every worker has answered once
        self._broken = False
        # messages composed ahead (``ahead``), by what makes them one message
        self._ahead: dict[Hashable, asyncio.Future[ComposedMessage | None]] = {}
        self._ahead_bytes = 0
        self._sizes: dict[Hashable, int] = {}  # the bytes of each counted in ``_ahead_bytes``
        self.ahead_used = 0  # messages sent as composed ahead

    def expect(self, messages: int) -> None:
        """This run will compose about ``messages`` messages: start the workers now if they
        pay (as many as the first ``IN_PROCESS_FIRST`` would start them anyway)."""
        if messages >= IN_PROCESS_FIRST:
            self._start_once()

    def ahead(self, job: Job) -> Hashable | None:
        """Compose ``job`` in a worker now, for a ``compose`` of the same message later; its
        key (for ``drop``), or None when nothing was started (no workers ready, enough in
        hand): the message is then composed when it is sent, as always."""
        if self._broken or not self._ready.is_set() or self._pool is None:
            return None
        key = job.same_message()
        if key in self._ahead:
            return key
        working = sum(1 for f in self._ahead.values() if not f.done())
        if working >= AHEAD_IN_FLIGHT_PER_WORKER * self.workers or self._ahead_bytes > AHEAD_BYTES:
            return None
        try:
            future = asyncio.wrap_future(self._pool.submit(_compose_in_worker, job, True))
        except Exception:  # noqa: BLE001 - a broken pool: ``compose`` finds out and says so
            return None
        future.add_done_callback(lambda done: self._held(key, done))
        self._ahead[key] = future
        return key

    def _held(self, key: Hashable, future: asyncio.Future[ComposedMessage | None]) -> None:
        # counted only while it is still held: one taken or dropped before this callback ran
        # is not counted at all
        if self._ahead.get(key) is not future or future.cancelled() or future.exception():
            return
        composed = future.result()
        if composed is not None:
            size = len(composed.raw) + sum(map(len, (composed.record_parts or {}).values()))
            self._sizes[key] = size
            self._ahead_bytes += size

    def drop(self, keys: Sequence[Hashable] | None = None) -> None:
        """Forget messages composed ahead (every one when ``keys`` is None): what they said
        changed, or the run no longer needs them."""
        for key in list(self._ahead) if keys is None else keys:
            future = self._ahead.pop(key, None)
            if future is not None:
                self._release(key, future)

    def _release(self, key: Hashable, future: asyncio.Future[ComposedMessage | None]) -> None:
        if not future.done():
            future.cancel()
        self._ahead_bytes -= self._sizes.pop(key, 0)

    async def _composed_ahead(self, job: Job) -> ComposedMessage | None:
        key = job.same_message()
        future = self._ahead.pop(key, None) if self._ahead else None
        if future is None:
            return None
        try:
            composed = await future
        except Exception:  # noqa: BLE001 - a worker died: composed again, as without one
            return None
        finally:
            self._release(key, future)
        if composed is not None:
            self.ahead_used += 1
        return composed

    async def compose(
        self, job: Job, complete: Callable[[Job], Job] | None = None
    ) -> ComposedMessage:
        """``job`` composed: in a worker once the run has many messages, else here.
        ``complete`` finishes a job composed now, not ahead (the log's head, read from disk, is
        asked for only then)."""
        self.composed += 1
        early = await self._composed_ahead(job)
        if early is not None:
            return early
        if complete is not None:
            job = complete(job)
        pool = self._usable_pool()
        if pool is not None:
            try:
                composed = await asyncio.wrap_future(pool.submit(_compose_in_worker, job, False))
            except Exception:  # a worker died (BrokenProcessPool) or could not take the job
                self._broken = True
                composed = None
            if composed is not None:
                return composed
        self.in_process += 1
        return job.run(self.settings)

    def _usable_pool(self) -> ProcessPoolExecutor | None:
        if self._broken:
            return None
        if self._ready.is_set():
            return self._pool
        if self.composed > IN_PROCESS_FIRST:
            self._start_once()
        return None  # until every worker is up, messages are composed here

    def _start_once(self) -> None:
        if self._starter is None and self.workers >= 1 and not self._broken:
            # started beside the event loop: starting a process waits for the server to have
            # imported the package, which would hold up every lookup and SMTP exchange
            self._starter = threading.Thread(target=self._start, name="compose-workers")
            self._starter.start()

    def _start(self) -> None:
        try:
            context = forkserver()
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=context,
                initializer=_start_worker,
                initargs=(self.settings,),
            )
            for started in [self._pool.submit(_ready) for _ in range(self.workers)]:
                started.result()
        except Exception:  # no process could be started here: compose in this one
            self._broken = True
            return
        self._ready.set()

    def close(self) -> None:
        self.drop()
        if self._starter is not None:
            self._starter.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
